package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	ltls "github.com/lesismal/llib/std/crypto/tls"
)

// testCertStore writes a self-signed certificate into dir and loads it.
func testCertStore(tb testing.TB, dir string) *certStore {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fuzz"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cfg := TLSConfig{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}
	_ = os.WriteFile(cfg.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(cfg.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cs, err := newCertStore("fuzz", cfg.WithDefaults(), []string{"http/1.1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// clientHello returns the first flight of a crypto/tls client offering at
// most version max.
func clientHello(tb testing.TB, maxVersion uint16) []byte {
	tb.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go func() {
		_ = tls.Client(c1, &tls.Config{InsecureSkipVerify: true, MaxVersion: maxVersion, NextProtos: []string{"http/1.1"}}).Handshake()
	}()
	head := make([]byte, 5)
	if _, err := io.ReadFull(c2, head); err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		tb.Fatal(err)
	}
	return append(head, body...)
}

// discardConn is a net.Conn that accepts every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) Close() error                     { return nil }

// FuzzTLSServerInput feeds arbitrary client bytes, in two chunks, to the
// server side of the non-blocking TLS state machine the listeners use: it
// must answer with an error or wait for more, never panic or spin.
func FuzzTLSServerInput(f *testing.F) {
	cs := testCertStore(f, f.TempDir())
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		hello := clientHello(f, v)
		f.Add(hello, uint16(len(hello)/2))
		f.Add(append(hello, 0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5), uint16(len(hello)))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint16(3))
	f.Add([]byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff}, uint16(5))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		tc := ltls.NewConn(discardConn{}, cs.base, false, true)
		k := min(int(split), len(data))
		buf := make([]byte, 16<<10)
		for _, chunk := range [][]byte{data[:k], data[k:]} {
			_, _ = tc.Append(chunk)
			for range 64 {
				n, err := tc.Read(buf)
				if err != nil || n == 0 {
					break
				}
			}
		}
	})
}

// TestTLSStepRecovers: a panic in the TLS state machine fails the one
// connection and leaves its lock free; later calls fail at once.
func TestTLSStepRecovers(t *testing.T) {
	ts := &tlsSock{}
	_, _, err := ts.step(func() (int, error) { panic("boom") })
	if !errors.Is(err, errTLSBroken) {
		t.Fatalf("err = %v, want errTLSBroken", err)
	}
	called := false
	_, _, err = ts.step(func() (int, error) { called = true; return 0, nil })
	if !errors.Is(err, errTLSBroken) || called {
		t.Fatalf("after a panic: err = %v, called = %v", err, called)
	}
}

// TestTrimHandshake: the fields trimHandshake clears exist in the pinned
// llib version, and a connection whose handshake state was dropped keeps
// working (echo over TLS 1.2 and 1.3 is tested end to end in tls_test.go).
func TestTrimHandshake(t *testing.T) {
	if got, want := len(trimIndex), len(handshakeFields)+1; got != want {
		t.Fatalf("found %d of the %d fields of llib's tls.Conn to trim: the llib version changed", got, want)
	}
	cs := testCertStore(t, t.TempDir())
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c1, c2 := net.Pipe()
		client := tls.Client(c1, &tls.Config{InsecureSkipVerify: true, MaxVersion: v})
		hs := make(chan error, 1)
		go func() { hs <- client.Handshake() }()
		server := ltls.NewConn(c2, cs.base, false, true)
		buf := make([]byte, 16<<10)
		for !server.ConnectionState().HandshakeComplete {
			n, err := c2.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = server.Append(buf[:n])
			if _, err := server.Read(nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-hs; err != nil {
			t.Fatal(err)
		}
		trimHandshake(server)
		sv := reflect.ValueOf(server).Elem()
		for _, i := range trimIndex {
			if f := sv.FieldByIndex(i); !f.IsNil() {
				t.Errorf("version %x: %s not released", v, sv.Type().FieldByIndex(i).Name)
			}
		}
		// The trimmed connection still reads and writes.
		go func() { _, _ = client.Write([]byte("ping")) }()
		got := ""
		for got == "" {
			n, err := c2.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = server.Append(buf[:n])
			if n, err = server.Read(buf); err != nil {
				t.Fatal(err)
			}
			got = string(buf[:n])
		}
		go func() { _, _ = server.Write([]byte("pong")) }()
		n, err := client.Read(buf)
		if got != "ping" || err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("version %x: after the trim got %q, then %q, %v", v, got, buf[:n], err)
		}
		_ = c1.Close()
		_ = c2.Close()
	}
}
