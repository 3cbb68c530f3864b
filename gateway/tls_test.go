package gateway_test

import (
	"bufio"
	"context"
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/gateway"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "gatework test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate for 127.0.0.1 named cn and returns its
// PEM certificate and key.
func (ca *testCA) issue(t testing.TB, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeFileAtomic replaces name the way certificate tools do: a new file
// renamed over the old one.
func writeFileAtomic(t testing.TB, name string, data []byte) {
	t.Helper()
	tmp := name + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// tlsFiles writes a server certificate named cn, signed by ca, into dir
// and returns the listener TLS configuration for it.
func tlsFiles(t testing.TB, dir string, ca *testCA, cn string) *gateway.TLSConfig {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, cn, x509.ExtKeyUsageServerAuth)
	cfg := &gateway.TLSConfig{
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
	}
	writeFileAtomic(t, cfg.CertFile, certPEM)
	writeFileAtomic(t, cfg.KeyFile, keyPEM)
	return cfg
}

// tlsWait polls cond until it holds or the deadline passes.
func tlsWait(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialWSS opens a wss:// client and checks one echo.
func dialWSS(t *testing.T, addr net.Addr, cfg *tls.Config) (*websocket.Conn, error) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: cfg, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss://"+addr.String()+"/", nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws, nil
}

func wsEcho(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %d bytes, want %d", len(got), len(msg))
	}
}

// TestTLSEcho: wss:// and TCP+TLS clients get their messages echoed
// through a gateway and a worker, for each minimum version, with messages
// from empty to larger than a TLS record; a client offering only a
// version below the minimum is refused.
func TestTLSEcho(t *testing.T) {
	ca := newTestCA(t)
	big := strings.Repeat("0123456789abcdef", 5000) // 80 KB: several records
	for _, minVersion := range []string{"", "1.2", "1.3"} {
		t.Run("min_"+minVersion, func(t *testing.T) {
			tc := tlsFiles(t, t.TempDir(), ca, "gw")
			tc.MinVersion = minVersion
			gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
				{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc},
				{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc},
			}})
			for _, maxVersion := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
				cc := &tls.Config{RootCAs: ca.pool, MaxVersion: maxVersion}
				ws, err := dialWSS(t, gw.Addr("wss"), cc)
				if minVersion == "1.3" && maxVersion == tls.VersionTLS12 {
					if err == nil {
						t.Fatal("a TLS 1.2 client was accepted with min_version 1.3")
					}
					continue
				}
				if err != nil {
					t.Fatalf("wss, max version %x: %v", maxVersion, err)
				}
				for _, msg := range []string{"hello", "", big} {
					wsEcho(t, ws, msg)
				}
				c, err := tls.Dial("tcp", gw.Addr("tls").String(), cc)
				if err != nil {
					t.Fatalf("tcp+tls: %v", err)
				}
				if got := c.ConnectionState().Version; got != maxVersion {
					t.Fatalf("version %x, want %x", got, maxVersion)
				}
				_, _ = c.Write([]byte("line one\nline two\n" + big + "\n"))
				r := bufio.NewReader(c)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				for _, want := range []string{"line one\n", "line two\n", big + "\n"} {
					got, err := r.ReadString('\n')
					if err != nil || got != want {
						t.Fatalf("got %d bytes, %v; want %d", len(got), err, len(want))
					}
				}
				_ = c.Close()
			}
			// The TLS 1.3 clients' records went to the gateway's record
			// layer once their handshakes were complete.
			for _, name := range []string{"wss", "tls"} {
				if n := gateway.TLSTakeovers(gw, name); n != 1 {
					t.Fatalf("%s: %d TLS 1.3 connections taken over from crypto/tls, want 1", name, n)
				}
			}
		})
	}
}

// TestTLSRefusesNonTLS: a plain client on a TLS port is answered (HTTP 400
// on a wss port) and closed, a client that sends nothing or half a
// handshake is closed after the handshake timeout, an untrusted client is
// closed by its own side; none of them becomes a connection.
func TestTLSRefusesNonTLS(t *testing.T) {
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	gw := startEchoOn(t, gateway.Config{
		HandshakeTimeout: time.Second,
		Listeners: []gateway.ListenerConfig{
			{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc},
			{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc},
		}})
	tests := []struct {
		name     string
		listener string
		send     string
		want     string // prefix of what the client reads before EOF
	}{
		{"http on wss", "wss", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", "HTTP/1.1 400 "},
		{"text on tcp+tls", "tls", "hello\n", ""},
		{"nothing on wss", "wss", "", ""},
		{"nothing on tcp+tls", "tls", "", ""},
		{"half a client hello", "tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", gw.Addr(tt.listener).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.send != "" {
				if _, err := c.Write([]byte(tt.send)); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			all, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v (want an answer, then EOF)", err)
			}
			if !strings.HasPrefix(string(all), tt.want) {
				t.Fatalf("got %q, want %q first", all, tt.want)
			}
			if tt.want == "" && len(all) > 0 && all[0] != 0x15 { // only a TLS alert may come
				t.Fatalf("got %q", all)
			}
			if tt.send == "" && time.Since(start) < 500*time.Millisecond {
				t.Fatalf("an idle socket was closed after %v, before the handshake timeout", time.Since(start))
			}
		})
	}
	untrusted := &tls.Config{RootCAs: x509.NewCertPool()}
	if _, err := tls.Dial("tcp", gw.Addr("tls").String(), untrusted); err == nil {
		t.Fatal("a client that does not trust the certificate connected")
	}
	if st := gw.Stats(); st.Connections != 0 || st.Accepted != 0 {
		t.Fatalf("connections %d, accepted %d; want none", st.Connections, st.Accepted)
	}
	// Plain HTTP and plain text failed their handshakes (the untrusted
	// client may add one more); the three silent sockets timed out.
	tlsWait(t, 5*time.Second, "the refusals counted", func() bool {
		r := gw.Stats().Refused
		return r["tls_handshake"] >= 2 && r["handshake_timeout"] == 3
	})
}

// logRecorder keeps the messages logged at error level.
type logRecorder struct {
	mu     sync.Mutex
	errors []string
	infos  []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := rec.Message
	rec.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	switch {
	case rec.Level >= slog.LevelError:
		r.errors = append(r.errors, msg)
	case strings.Contains(msg, "reloaded"):
		r.infos = append(r.infos, msg)
	}
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) count() (errs, reloads int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errors), len(r.infos)
}

// servedCN connects and returns the common name of the certificate the
// listener served.
func servedCN(t *testing.T, addr net.Addr, ca *testCA) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestTLSReload: a certificate replaced on disk is served to new
// connections while open ones stay connected and working; a broken new
// certificate (garbage, or a key that does not match) is logged once and
// the previous one stays in use.
func TestTLSReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	tc := tlsFiles(t, dir, ca, "first")
	tc.ReloadInterval = 50 * time.Millisecond
	rec := &logRecorder{}
	gw := startEchoOn(t, gateway.Config{
		Logger: slog.New(rec),
		Listeners: []gateway.ListenerConfig{
			{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc},
			{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc},
		}})
	if cn := servedCN(t, gw.Addr("tls"), ca); cn != "first" {
		t.Fatalf("served %q, want first", cn)
	}
	old, err := dialWSS(t, gw.Addr("wss"), &tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	wsEcho(t, old, "before")

	certPEM, keyPEM := ca.issue(t, "second", x509.ExtKeyUsageServerAuth)
	writeFileAtomic(t, tc.CertFile, certPEM)
	writeFileAtomic(t, tc.KeyFile, keyPEM)
	tlsWait(t, 5*time.Second, "the new certificate", func() bool {
		return servedCN(t, gw.Addr("tls"), ca) == "second" && servedCN(t, gw.Addr("wss"), ca) == "second"
	})
	wsEcho(t, old, "after the reload")

	otherCert, otherKey := ca.issue(t, "third", x509.ExtKeyUsageServerAuth)
	_ = otherCert
	bad := []struct {
		name       string
		cert, key  []byte
		wantErrors int
	}{
		{"garbage certificate", []byte("not a certificate"), keyPEM, 1},
		{"key of another certificate", certPEM, otherKey, 2},
	}
	for _, b := range bad {
		writeFileAtomic(t, tc.CertFile, b.cert)
		writeFileAtomic(t, tc.KeyFile, b.key)
		tlsWait(t, 5*time.Second, "the reload error of "+b.name, func() bool {
			errs, _ := rec.count()
			return errs >= 2*b.wantErrors // one per listener
		})
		if cn := servedCN(t, gw.Addr("tls"), ca); cn != "second" {
			t.Fatalf("%s: served %q, want the previous certificate", b.name, cn)
		}
		wsEcho(t, old, "still connected")
	}
	// An unchanged broken set is not reported again.
	time.Sleep(4 * tc.ReloadInterval)
	if errs, _ := rec.count(); errs != 4 {
		t.Fatalf("%d errors logged, want 4 (once per listener and change)", errs)
	}
	// A good set after a broken one is taken.
	writeFileAtomic(t, tc.CertFile, otherCert)
	tlsWait(t, 5*time.Second, "recovery", func() bool { return servedCN(t, gw.Addr("tls"), ca) == "third" })
}

// TestTLSClientCA: with client_ca_file, only clients with a certificate
// from that CA connect.
func TestTLSClientCA(t *testing.T) {
	ca := newTestCA(t)
	clientCA := newTestCA(t)
	dir := t.TempDir()
	tc := tlsFiles(t, dir, ca, "gw")
	tc.ClientCAFile = filepath.Join(dir, "clients.pem")
	tc.ReloadInterval = 50 * time.Millisecond
	writeFileAtomic(t, tc.ClientCAFile, clientCA.pem)
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc},
	}})
	pair := func(c *testCA) tls.Certificate {
		certPEM, keyPEM := c.issue(t, "client", x509.ExtKeyUsageClientAuth)
		p, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"no certificate", nil, false},
		{"certificate from another CA", []tls.Certificate{pair(ca)}, false},
		{"certificate from the client CA", []tls.Certificate{pair(clientCA)}, true},
	}
	// accepted connects with certs and reports whether the server took it.
	accepted := func(certs []tls.Certificate) (bool, error) {
		ws, err := dialWSS(t, gw.Addr("wss"), &tls.Config{RootCAs: ca.pool, Certificates: certs})
		if err == nil {
			// TLS 1.3: the server's verdict on the client's
			// certificate arrives after the client's handshake.
			_ = ws.WriteMessage(websocket.TextMessage, []byte("x"))
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err = ws.ReadMessage()
			_ = ws.Close()
		}
		return err == nil, err
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok, err := accepted(tt.certs); ok != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// With a client certificate, crypto/tls sends its session ticket
	// after the client's Finished: the accepted clients still echoed on
	// the gateway's record layer, counting that record.
	if n := gateway.TLSTakeovers(gw, "wss"); n < 1 {
		t.Fatalf("%d connections taken over from crypto/tls", n)
	}
	// The client CA file is reloaded too: after a switch to another CA,
	// that CA's clients get in and the old CA's do not.
	oldClient, newCA := pair(clientCA), newTestCA(t)
	newClient := pair(newCA)
	writeFileAtomic(t, tc.ClientCAFile, newCA.pem)
	tlsWait(t, 5*time.Second, "the new client CA", func() bool {
		ok, _ := accepted([]tls.Certificate{newClient})
		return ok
	})
	if ok, _ := accepted([]tls.Certificate{oldClient}); ok {
		t.Fatal("a client of the replaced CA still connects")
	}
}

// TestTLSConfigValidate: the listener's tls keys are checked.
func TestTLSConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		tls     gateway.TLSConfig
		wantKey string
	}{
		{"files", gateway.TLSConfig{CertFile: "c", KeyFile: "k"}, ""},
		{"min 1.3", gateway.TLSConfig{CertFile: "c", KeyFile: "k", MinVersion: "1.3"}, ""},
		{"no cert", gateway.TLSConfig{KeyFile: "k"}, "listeners[0].tls.cert_file"},
		{"no key", gateway.TLSConfig{CertFile: "c"}, "listeners[0].tls.key_file"},
		{"min 1.1", gateway.TLSConfig{CertFile: "c", KeyFile: "k", MinVersion: "1.1"}, "listeners[0].tls.min_version"},
		{"negative reload", gateway.TLSConfig{CertFile: "c", KeyFile: "k", ReloadInterval: -1}, "listeners[0].tls.reload_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := tt.tls
			err := gateway.Config{Listeners: []gateway.ListenerConfig{
				{Protocol: "ws", Addr: "127.0.0.1:0", TLS: &tc}}}.Validate()
			switch {
			case tt.wantKey == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantKey != "" && (err == nil || !strings.Contains(err.Error(), tt.wantKey+":")):
				t.Fatalf("err = %v, want one naming %s", err, tt.wantKey)
			}
		})
	}
	// Files that do not load fail the start, naming the key.
	tc := gateway.TLSConfig{CertFile: filepath.Join(t.TempDir(), "missing.pem"), KeyFile: "k"}
	nc := gateway.StartTestBus(t)
	gw, err := gateway.New(nc, gateway.Config{Logger: slog.New(slog.DiscardHandler),
		Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0", TLS: &tc}}})
	if err == nil {
		err = gw.Start()
		t.Cleanup(func() { _ = gw.Shutdown(t.Context()) })
	}
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("start with a missing certificate: %v", err)
	}
}

// TestTLSGracefulClose: a graceful close through TLS is as prompt as on a
// plain socket: after a large echo (many records, so the plain/record
// byte accounting of the outbound queue is exercised), Shutdown's close
// frame arrives, then close_notify and FIN, well before CloseTimeout,
// which only applies if the gateway wrongly thinks bytes are unsent.
func TestTLSGracefulClose(t *testing.T) {
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	for _, useTLS := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[useTLS]
		t.Run(name, func(t *testing.T) {
			l := gateway.ListenerConfig{Name: "ws", Protocol: "ws", Addr: "127.0.0.1:0"}
			scheme := "ws://"
			if useTLS {
				l.TLS, scheme = tc, "wss://"
			}
			gw := startEchoOn(t, gateway.Config{CloseTimeout: 10 * time.Second, Listeners: []gateway.ListenerConfig{l}})
			d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}
			ws, _, err := d.Dial(scheme+gw.Addr("ws").String()+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			wsEcho(t, ws, strings.Repeat("x", 200_000))
			wsEcho(t, ws, "small")
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- gw.Shutdown(context.Background()) }()
			_ = ws.SetReadDeadline(time.Now().Add(8 * time.Second))
			_, _, err = ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
				t.Fatalf("got %v, want close 1001", err)
			}
			// gorilla answers the close frame; then the socket ends.
			_, err = ws.UnderlyingConn().Read(make([]byte, 1))
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after the close frame: %v, want EOF", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Fatalf("graceful close took %v (close timeout 10s): the queue never looked empty", el)
			}
		})
	}
}
