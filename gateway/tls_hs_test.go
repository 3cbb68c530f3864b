package gateway_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
)

// goClientHello returns the first flight (the ClientHello record) of a
// crypto/tls client with Go's defaults, post-quantum key share included.
func goClientHello(t *testing.T) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go func() { _ = tls.Client(c1, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
	head := make([]byte, 5)
	if _, err := io.ReadFull(c2, head); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	return append(head, body...)
}

// tlsEchoLine sends a line over a TCP+TLS client and checks its echo.
func tlsEchoLine(t *testing.T, c *tls.Conn, line string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo: got %q, %v", got, err)
	}
}

// TestTLSOpenSSL: Debian's openssl s_client is refused TLS 1.0 and 1.1
// and gets TLS 1.2 (ECDHE with AEAD) and TLS 1.3 with ALPN http/1.1 on a
// wss listener, and an echo on a TCP+TLS listener.
func TestTLSOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFileAtomic(t, caFile, ca.pem)
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc},
		{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc},
	}})
	tests := []struct {
		flag, listener string
		ok             bool
		want           []string // in the output of a successful session
	}{
		{"-tls1", "wss", false, nil},
		{"-tls1_1", "wss", false, nil},
		{"-tls1_2", "wss", true, []string{"TLSv1.2, Cipher is ECDHE-ECDSA-AES", "ALPN protocol: http/1.1", "Verify return code: 0 (ok)"}},
		{"-tls1_3", "wss", true, []string{"TLSv1.3, Cipher is TLS_", "ALPN protocol: http/1.1", "Verify return code: 0 (ok)"}},
		{"-tls1_2", "tls", true, []string{"echo-me"}},
		{"-tls1_3", "tls", true, []string{"echo-me"}},
	}
	for _, tt := range tests {
		t.Run(tt.flag+"_"+tt.listener, func(t *testing.T) {
			args := []string{"s_client", "-connect", gw.Addr(tt.listener).String(), tt.flag,
				"-CAfile", caFile, "-verify_return_error"}
			if tt.listener == "wss" {
				args = append(args, "-alpn", "http/1.1")
			}
			if tt.flag == "-tls1" || tt.flag == "-tls1_1" {
				args = append(args, "-cipher", "DEFAULT@SECLEVEL=0")
			}
			cmd := exec.Command(openssl, args...)
			in := ""
			if tt.listener == "tls" {
				in = "echo-me\n"
			}
			// A line "Q" ends the session, after a pause for the echo.
			pr, pw := io.Pipe()
			go func() {
				_, _ = pw.Write([]byte(in))
				time.Sleep(300 * time.Millisecond)
				_, _ = pw.Write([]byte("Q\n"))
				_ = pw.Close()
			}()
			cmd.Stdin = pr
			done := make(chan struct{})
			time.AfterFunc(10*time.Second, func() {
				select {
				case <-done:
				default:
					_ = cmd.Process.Kill()
				}
			})
			out, err := cmd.CombinedOutput()
			close(done)
			if !tt.ok {
				if err == nil || !strings.Contains(string(out), "alert protocol version") {
					t.Fatalf("%s was not refused with a protocol_version alert: %v\n%s", tt.flag, err, out)
				}
				return
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("%s: output lacks %q:\n%s", tt.flag, w, out)
				}
			}
		})
	}
}

// TestTLSSplitAndMalformedHello: a ClientHello arriving in 1-byte writes
// completes, over wss and TCP+TLS; a malformed ClientHello gets an alert
// and is closed at once and counted as a failed handshake.
func TestTLSSplitAndMalformedHello(t *testing.T) {
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc},
	}})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		raw, err := net.Dial("tcp", gw.Addr("tls").String())
		if err != nil {
			t.Fatal(err)
		}
		_ = raw.(*net.TCPConn).SetNoDelay(true)
		c := tls.Client(chunkConn{raw, 1}, &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", MaxVersion: v})
		tlsEchoLine(t, c, fmt.Sprintf("split %x", v))
		_ = c.Close()
	}
	hello := goClientHello(t)
	bad := []struct {
		name string
		data []byte
	}{
		{"empty hello", []byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00}},
		{"truncated extensions", bytes.Clone(hello[:5+4+34+1])},
		{"wrong message type", append([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00}, hello[9:]...)},
		{"record longer than TLS allows", []byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff, 0xfb}},
	}
	// The truncated hello says its true length in its headers but ends
	// early: fix up the record and message lengths to what is there.
	tr := bad[1].data
	tr[3], tr[4] = 0, byte(len(tr)-5)
	tr[6], tr[7], tr[8] = 0, 0, byte(len(tr)-9)
	before := gw.Stats().Refused["tls_handshake"]
	for _, b := range bad {
		c, err := net.Dial("tcp", gw.Addr("tls").String())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(b.data); err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(c)
		_ = c.Close()
		if err != nil || len(all) == 0 || all[0] != 0x15 {
			t.Fatalf("%s: got %q, %v; want an alert, then EOF", b.name, all, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: closed after %v, not at once", b.name, d)
		}
	}
	tlsWait(t, 5*time.Second, "the failed handshakes counted", func() bool {
		return gw.Stats().Refused["tls_handshake"]-before == uint64(len(bad))
	})
}

// TestTLSStalledHandshake: a client that sends its ClientHello and then
// nothing holds a handshake goroutine, with no other client waiting for
// one, until the handshake timeout closes it. With the bound of
// concurrent handshakes at 1, a second client queues behind it: the
// stalled handshake, waiting for its client for longer than
// handshakeStall (1s), is then closed at the next sweep and the second
// one completes, long before the timeout (before, it waited for the
// whole timeout: a few stalled hellos a second blocked every handshake).
// A client that sent half its ClientHello holds no handshake goroutine.
func TestTLSStalledHandshake(t *testing.T) {
	gateway.SetMaxTLSHandshakes(t, 1)
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	const timeout = 4 * time.Second
	gw := startEchoOn(t, gateway.Config{
		HandshakeTimeout: timeout,
		Listeners:        []gateway.ListenerConfig{{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc}},
	})
	hello := goClientHello(t)
	slow, err := net.Dial("tcp", gw.Addr("tls").String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write(hello[:len(hello)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	first, err := tls.Dial("tcp", gw.Addr("tls").String(), &tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	tlsEchoLine(t, first, "beside a slow hello")
	_ = first.Close()
	if d := time.Since(t0); d > timeout/2 {
		t.Fatalf("a handshake beside a half ClientHello took %v: the slow client held the goroutine", d)
	}

	// stall sends a whole ClientHello and nothing more; the channel gets
	// how long after that the server closed the socket.
	stall := func() chan time.Duration {
		c, err := net.Dial("tcp", gw.Addr("tls").String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		start := time.Now()
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		closed := make(chan time.Duration, 1)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(3 * timeout))
			_, _ = io.Copy(io.Discard, c) // the server's flight, then EOF
			closed <- time.Since(start)
		}()
		return closed
	}

	// Alone, a stalled handshake keeps its goroutine past handshakeStall.
	closed := stall()
	const queueAfter = 1500 * time.Millisecond
	time.Sleep(queueAfter)
	select {
	case d := <-closed:
		t.Fatalf("a stalled handshake with no one queued was closed after %v, before the timeout %v", d, timeout)
	default:
	}
	// A client that queues behind it gets the goroutine at the next sweep.
	t1 := time.Now()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", gw.Addr("tls").String(),
		&tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatalf("the queued client: %v", err)
	}
	defer c.Close()
	waited := time.Since(t1)
	tlsEchoLine(t, c, "after the queue")
	if waited > 1500*time.Millisecond {
		t.Fatalf("the queued handshake completed after %v: the stalled one kept the bound's one goroutine", waited)
	}
	if d := <-closed; d < queueAfter || d > timeout-500*time.Millisecond {
		t.Fatalf("the stalled client was closed after %v, want between %v and %v", d, queueAfter, timeout-500*time.Millisecond)
	}

	// With no one queued, the timeout closes a stalled handshake.
	if d := <-stall(); d < timeout-100*time.Millisecond || d > timeout+2*time.Second {
		t.Fatalf("the stalled client was closed after %v, want about %v", d, timeout)
	}
	tlsWait(t, 5*time.Second, "the timeouts counted", func() bool {
		return gw.Stats().Refused["handshake_timeout"] >= 2
	})
}

// TestTLSReloadUnderLoad: certificates rotated while clients connect in a
// loop: every handshake completes, each with the old or the new
// certificate, and the new one is served in the end.
func TestTLSReloadUnderLoad(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	tc := tlsFiles(t, dir, ca, "gen0")
	tc.ReloadInterval = 20 * time.Millisecond
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc},
	}})
	var stop atomic.Bool
	var mu sync.Mutex
	seen := map[string]int{}
	var failures []error
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ws, err := dialWSS(t, gw.Addr("wss"), &tls.Config{RootCAs: ca.pool})
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					cs := ws.UnderlyingConn().(*tls.Conn).ConnectionState()
					seen[cs.PeerCertificates[0].Subject.CommonName]++
				}
				mu.Unlock()
				if ws != nil {
					_ = ws.Close()
				}
			}
		}()
	}
	for gen := 1; gen <= 5; gen++ {
		time.Sleep(150 * time.Millisecond)
		certPEM, keyPEM := ca.issue(t, fmt.Sprintf("gen%d", gen), x509.ExtKeyUsageServerAuth)
		// Both files in one rename each, key first: a check between them
		// sees a mismatch and keeps the previous pair.
		writeFileAtomic(t, tc.KeyFile, keyPEM)
		writeFileAtomic(t, tc.CertFile, certPEM)
	}
	tlsWait(t, 5*time.Second, "the last certificate", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["gen5"] > 0
	})
	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d handshakes failed during the rotation, first: %v", len(failures), failures[0])
	}
	total := 0
	for _, n := range seen {
		total += n
	}
	if len(seen) < 3 || total < 20 {
		t.Fatalf("handshakes per certificate %v: want several certificates and handshakes", seen)
	}
}

// TestTLSPostQuantum: a client with Go's defaults gets the post-quantum
// hybrid key exchange over wss and TCP+TLS; one that offers only X25519
// still connects.
func TestTLSPostQuantum(t *testing.T) {
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", TLS: tc},
		{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc},
	}})
	ws, err := dialWSS(t, gw.Addr("wss"), &tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	if got := ws.UnderlyingConn().(*tls.Conn).ConnectionState().CurveID; got != tls.X25519MLKEM768 {
		t.Fatalf("wss key exchange %v, want X25519MLKEM768", got)
	}
	wsEcho(t, ws, "post-quantum")
	for _, curves := range [][]tls.CurveID{nil, {tls.X25519}} {
		c, err := tls.Dial("tcp", gw.Addr("tls").String(), &tls.Config{RootCAs: ca.pool, CurvePreferences: curves})
		if err != nil {
			t.Fatal(err)
		}
		want := tls.X25519MLKEM768
		if curves != nil {
			want = tls.X25519
		}
		if got := c.ConnectionState().CurveID; got != want {
			t.Fatalf("curves %v: key exchange %v, want %v", curves, got, want)
		}
		tlsEchoLine(t, c, "curve")
		_ = c.Close()
	}
}

// TestTLSOpenSSLKeyUpdate: Debian's openssl s_client over TLS 1.3, on
// each TLS 1.3 cipher suite (and once after a HelloRetryRequest: its
// first key share is for X448, which Go does not offer), sends KeyUpdate,
// not requesting ours (`k`) and requesting it (`K`), between lines; every
// line is echoed, so the gateway's record layer followed the client's
// keys and answered with its own KeyUpdate before writing under its next
// key. The session ends with the client's close_notify.
func TestTLSOpenSSLKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	ca := newTestCA(t)
	tc := tlsFiles(t, t.TempDir(), ca, "gw")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFileAtomic(t, caFile, ca.pem)
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Name: "tls", Protocol: "tcp", Addr: "127.0.0.1:0", TLS: tc},
	}})
	for i, tt := range []struct{ suite, groups string }{
		{"TLS_AES_128_GCM_SHA256", ""},
		{"TLS_AES_256_GCM_SHA384", ""},
		{"TLS_CHACHA20_POLY1305_SHA256", ""},
		{"TLS_AES_128_GCM_SHA256", "X448:X25519"},
	} {
		t.Run(tt.suite+"_"+tt.groups, func(t *testing.T) {
			args := []string{"s_client", "-connect", gw.Addr("tls").String(), "-tls1_3",
				"-CAfile", caFile, "-verify_return_error", "-msg", "-ciphersuites", tt.suite}
			if tt.groups != "" {
				args = append(args, "-groups", tt.groups)
			}
			cmd := exec.Command(openssl, args...)
			pr, pw := io.Pipe()
			go func() {
				for _, l := range []string{"line-one", "k", "line-two", "K", "line-three", "K", "k", "line-four"} {
					_, _ = pw.Write([]byte(l + "\n"))
					time.Sleep(200 * time.Millisecond)
				}
				_, _ = pw.Write([]byte("Q\n"))
				_ = pw.Close()
			}()
			cmd.Stdin = pr
			timer := time.AfterFunc(15*time.Second, func() { _ = cmd.Process.Kill() })
			out, err := cmd.CombinedOutput()
			timer.Stop()
			if err != nil {
				t.Fatalf("s_client: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "Cipher is "+tt.suite) {
				t.Fatalf("not on %s:\n%s", tt.suite, out)
			}
			// A HelloRetryRequest is traced as a second ServerHello.
			if hrr := strings.Count(string(out), "], ServerHello") == 2; hrr != (tt.groups != "") {
				t.Fatalf("HelloRetryRequest %v, want %v:\n%s", hrr, tt.groups != "", out)
			}
			for _, w := range []string{"line-one", "line-two", "line-three", "line-four"} {
				// s_client prints what it receives, not what it sends.
				if !strings.Contains(string(out), w) {
					t.Fatalf("%s was not echoed:\n%s", w, out)
				}
			}
			// -msg traces the handshake messages: the client's KeyUpdates
			// and, for each K, one from the server.
			if got := strings.Count(string(out), "<<< TLS 1.3, Handshake [length 0005], KeyUpdate"); got != 2 {
				t.Fatalf("%d KeyUpdates from the server, want 2:\n%s", got, out)
			}
			if n := gateway.TLSTakeovers(gw, "tls"); n != int64(i+1) {
				t.Fatalf("%d connections taken over from crypto/tls, want %d", n, i+1)
			}
		})
	}
}
