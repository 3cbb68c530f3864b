package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatework/gatework/internal/framing"
)

// openFDs counts the file descriptors of the test process.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

// TestHalfOpenHandshakes: 2,000 sockets that send half an upgrade request
// are each closed once the handshake timeout has passed, not before; a
// normal client is served meanwhile; every timeout is counted; the
// gateway's file descriptors are released.
func TestHalfOpenHandshakes(t *testing.T) {
	const n = 2000
	const timeout = time.Second
	s := startLimited(t, Config{HandshakeTimeout: timeout, Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	good := mustWS(t, s, "127.0.0.2")
	echo(t, good, "before")
	fds := openFDs(t)

	type result struct {
		lived time.Duration
		err   error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	var socks []net.Conn
	defer func() {
		for _, c := range socks {
			_ = c.Close()
		}
		wg.Wait()
	}()
	for i := range n {
		c, err := net.Dial("tcp", s.Addr("ws").String())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		dialed := time.Now()
		socks = append(socks, c)
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
			k, err := c.Read(make([]byte, 64))
			if k > 0 {
				err = errors.New("got an answer: " + err.Error())
			}
			results <- result{time.Since(dialed), err}
		}()
	}
	for i := 0; i < n; {
		select {
		case r := <-results:
			i++
			switch {
			case r.err == nil || isTimeout(r.err):
				t.Fatalf("socket %d not closed: %v", i, r.err)
			case r.lived < timeout-50*time.Millisecond:
				t.Fatalf("socket closed after %v, before the %v handshake timeout", r.lived, timeout)
			}
		case <-time.After(100 * time.Millisecond):
			echo(t, good, "meanwhile") // the gateway keeps serving
		}
	}
	echo(t, good, "after")
	if got := s.Stats().Refused["handshake_timeout"]; got != n {
		t.Fatalf("Refused[handshake_timeout] = %d, want %d", got, n)
	}
	// The gateway's side of every socket is closed: only the n client
	// sockets of this process remain open.
	waitFor(t, 5*time.Second, "the gateway's descriptors to be released", func() bool { return openFDs(t) <= fds+n+16 })
	for _, c := range socks {
		_ = c.Close()
	}
	socks = nil
	waitFor(t, 5*time.Second, "the descriptors to return to normal", func() bool { return openFDs(t) <= fds+16 })
}

// TestGarbage: bytes that are not the listener's protocol get a precise
// answer, are counted, and the socket is closed at once.
func TestGarbage(t *testing.T) {
	const maxMessage = 1024
	s := startLimited(t, Config{Listeners: []ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0"},
		{Name: "line", Protocol: "tcp", Addr: "127.0.0.1:0", MaxMessage: maxMessage},
		{Name: "length", Protocol: "tcp", Addr: "127.0.0.1:0", Framing: framing.Config{Kind: "length", LengthSize: 4}},
	}})
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7+3) | 0x80 // never \r or \n
		}
		return b
	}
	tests := []struct {
		name     string
		listener string
		send     []byte
		answer   string // prefix of what the client reads before EOF
		counter  func(Stats) uint64
	}{
		{"binary junk as an upgrade request", "ws", append(garbage(100), "\r\n\r\n"...), "HTTP/1.1 400 ",
			func(st Stats) uint64 { return st.Refused["bad_handshake"] }},
		{"endless junk as an upgrade request", "ws", garbage(9 << 10), "HTTP/1.1 431 ",
			func(st Stats) uint64 { return st.Refused["bad_handshake"] }},
		{"TLS hello on the ws port", "ws", append([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, "\r\n\r\n"...), "HTTP/1.1 400 ",
			func(st Stats) uint64 { return st.Refused["bad_handshake"] }},
		{"junk without a delimiter on a line listener", "line", garbage(2 * maxMessage), "",
			func(st Stats) uint64 { return st.Closes["message_too_large"] }},
		{"a length header claiming 4 GiB", "length", []byte{0xff, 0xff, 0xff, 0xff}, "",
			func(st Stats) uint64 { return st.Closes["message_too_large"] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.counter(s.Stats())
			c, err := net.Dial("tcp", s.Addr(tt.listener).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if isTimeout(err) {
				t.Fatalf("not closed: read %q", got)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("closed after %v, want at once", took)
			}
			if !strings.HasPrefix(string(got), tt.answer) || (tt.answer == "" && len(got) > 0) {
				t.Fatalf("answer %q, want %q", got, tt.answer)
			}
			waitFor(t, 5*time.Second, "the counter", func() bool { return tt.counter(s.Stats()) == before+1 })
		})
	}
}

// rawWS upgrades a raw socket and returns it with a reader past the
// server's 101 answer.
func rawWS(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr("ws").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		if line == "\r\n" {
			return c, r
		}
	}
}

// clientFrame encodes one masked client frame (mask 0: the payload goes
// as it is).
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var out []byte
	switch n := len(payload); {
	case n < 126:
		out = []byte{b0, 0x80 | byte(n)}
	case n <= 0xFFFF:
		out = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		out = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	}
	out = append(out, 0, 0, 0, 0)
	return append(out, payload...)
}

// readCloseCode reads server frames until a close frame and returns its
// code; -1 when the socket ends without one.
func readCloseCode(t *testing.T, r *bufio.Reader) int {
	t.Helper()
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return -1
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			_, _ = io.ReadFull(r, l[:])
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			_, _ = io.ReadFull(r, l[:])
			n = int(binary.BigEndian.Uint64(l[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return -1
		}
		if h[0]&0x0f == wsClose && n >= 2 {
			return int(binary.BigEndian.Uint16(payload))
		}
	}
}

// TestBadFrames: each abuse of WebSocket framing gets its close code and
// is counted under its close reason. (test/conformance covers many more
// frame sequences for the close codes alone.)
func TestBadFrames(t *testing.T) {
	const maxMessage = 1024
	s := startLimited(t, Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: maxMessage}}})
	cat := func(frames ...[]byte) []byte {
		var out []byte
		for _, f := range frames {
			out = append(out, f...)
		}
		return out
	}
	tests := []struct {
		name   string
		send   []byte
		code   int
		reason string
	}{
		{"frame over max_message", clientFrame(true, wsBinary, make([]byte, maxMessage+1)), 1009, "message_too_large"},
		{"header claiming 2^62 bytes", []byte{0x82, 0xff, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, 1009, "message_too_large"},
		{"fragments adding up over max_message", cat(clientFrame(false, wsText, make([]byte, maxMessage)), clientFrame(true, 0, []byte("x"))), 1009, "message_too_large"},
		{"invalid UTF-8 in a text frame", clientFrame(true, wsText, []byte("bad \xff\xfe")), 1007, "invalid_utf8"},
		{"invalid UTF-8 across fragments", cat(clientFrame(false, wsText, []byte("a\xed")), clientFrame(true, 0, []byte("\xa0\x80"))), 1007, "invalid_utf8"},
		{"continuation without start", clientFrame(true, 0, []byte("orphan")), 1002, "protocol_error"},
		{"text during a fragmented text", cat(clientFrame(false, wsText, []byte("a")), clientFrame(true, wsText, []byte("b"))), 1002, "protocol_error"},
		{"binary during a fragmented text", cat(clientFrame(false, wsText, []byte("a")), clientFrame(true, wsBinary, []byte("b"))), 1002, "protocol_error"},
		{"fragmented ping", cat(clientFrame(false, 0x9, []byte("p")), clientFrame(true, 0, []byte("q"))), 1002, "protocol_error"},
		{"control frame over 125 bytes", clientFrame(true, 0x9, make([]byte, 126)), 1002, "protocol_error"},
		{"reserved opcode", clientFrame(true, 0x3, []byte("x")), 1002, "protocol_error"},
		{"reserved bits", []byte{0x80 | 0x40 | wsText, 0x80, 0, 0, 0, 0}, 1002, "protocol_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().Closes[tt.reason]
			c, r := rawWS(t, s)
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			if code := readCloseCode(t, r); code != tt.code {
				t.Fatalf("close code %d, want %d", code, tt.code)
			}
			waitFor(t, 5*time.Second, "the "+tt.reason+" counter", func() bool { return s.Stats().Closes[tt.reason] == before+1 })
		})
	}
}
