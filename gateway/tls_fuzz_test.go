package gateway_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
)

// chunkConn splits every write into pieces of at most n bytes, each its
// own write on the socket (and, with TCP_NODELAY, mostly its own segment).
type chunkConn struct {
	net.Conn
	n int
}

func (c chunkConn) Write(b []byte) (int, error) {
	for off := 0; off < len(b); off += c.n {
		if _, err := c.Conn.Write(b[off:min(off+c.n, len(b))]); err != nil {
			return off, err
		}
	}
	return len(b), nil
}

// FuzzTLSServerInput drives a gateway's TCP+TLS listener with fuzzed
// input. With raw set, the bytes go to the port as they are, in two
// writes: the gateway answers or closes, and never crashes. Otherwise a
// crypto/tls client sends them as a line, its records cut into pieces of
// chunk bytes (a ClientHello in 1-byte writes among them), and the echo
// must come back whole: the event loop reassembles any split of records.
func FuzzTLSServerInput(f *testing.F) {
	ca := newTestCA(f)
	tc := tlsFiles(f, f.TempDir(), ca, "gw")
	gw := startEchoOn(f, gateway.Config{
		HandshakeTimeout: 2 * time.Second,
		Listeners:        []gateway.ListenerConfig{{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc}},
	})
	addr := gw.Addr("tls").String()
	f.Add([]byte("hello"), uint16(1), false)
	f.Add(bytes.Repeat([]byte("0123456789"), 2000), uint16(7), false)
	f.Add([]byte("hello"), uint16(1000), false)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(3), true)
	f.Add([]byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff}, uint16(5), true)
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x17, 0x03, 0x03, 0x00, 0x01, 0x00}, uint16(9), true)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16, raw bool) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if raw {
			k := min(int(chunk), len(data))
			_, _ = c.Write(data[:k])
			_, _ = c.Write(data[k:])
			_ = c.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, c) // an alert, then EOF
			return
		}
		line := bytes.ReplaceAll(data, []byte("\n"), []byte(" "))
		if len(line) > 32<<10 {
			line = line[:32<<10]
		}
		cc := tls.Client(chunkConn{c, 1 + int(chunk)%2048}, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
		if _, err := cc.Write(append(line, '\n')); err != nil {
			t.Fatalf("write: %v", err)
		}
		got, err := bufio.NewReader(cc).ReadBytes('\n')
		if err != nil || !bytes.Equal(got[:len(got)-1], line) {
			t.Fatalf("echo of %d bytes in %d-byte writes: got %d bytes, %v", len(line), 1+int(chunk)%2048, len(got), err)
		}
	})
}
