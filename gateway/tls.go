package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	ltls "github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio"
)

// TLSConfig turns a listener into a TLS listener (wss:// for ws, TCP+TLS
// for tcp). The certificate files are read when the listener starts and
// again whenever they change (see ReloadInterval); the handshake runs on
// the event loop like the rest of the protocol, with no goroutine per
// connection.
type TLSConfig struct {
	// CertFile is the PEM certificate chain, leaf first; required.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of the leaf certificate; required.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile, when set, is a PEM bundle of CAs: every client must
	// then present a certificate signed by one of them (mutual TLS). ""
	// means clients are not asked for a certificate.
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3"; ""
	// means "1.2". TLS 1.2 is offered with ECDHE and AEAD cipher suites
	// only.
	MinVersion string `yaml:"min_version"`
	// ReloadInterval is how often the files' modification times and sizes
	// are checked; a change loads them again and new connections get the
	// new certificate while open ones keep theirs. A new set that does not
	// load (unreadable, not PEM, key not matching the certificate) is
	// logged as an error and the previous certificate stays in use. 0
	// means 5s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// WithDefaults returns t with its zero fields set to their defaults.
func (t TLSConfig) WithDefaults() TLSConfig {
	if t.MinVersion == "" {
		t.MinVersion = "1.2"
	}
	if t.ReloadInterval <= 0 {
		t.ReloadInterval = 5 * time.Second
	}
	return t
}

// validate checks t's keys without reading the files (the listener reads
// them when it starts). key names a key of this listener.
func (t TLSConfig) validate(key func(string) string) error {
	if t.CertFile == "" {
		return fmt.Errorf("gateway: %s: required for tls", key("tls.cert_file"))
	}
	if t.KeyFile == "" {
		return fmt.Errorf("gateway: %s: required for tls", key("tls.key_file"))
	}
	if _, ok := tlsVersions[t.MinVersion]; !ok && t.MinVersion != "" {
		return fmt.Errorf("gateway: %s: %q is not 1.2 or 1.3", key("tls.min_version"), t.MinVersion)
	}
	if t.ReloadInterval < 0 {
		return fmt.Errorf("gateway: %s: negative", key("tls.reload_interval"))
	}
	return nil
}

// CheckFiles reads the files as a listener's start does and reports the
// first problem, naming its key ("tls.cert_file: …"). It does not change
// t and keeps nothing.
func (t TLSConfig) CheckFiles() error {
	cs := &certStore{cfg: t.WithDefaults()}
	_, err := cs.load()
	return err
}

// tlsVersions maps MinVersion to the protocol version.
var tlsVersions = map[string]uint16{"1.2": ltls.VersionTLS12, "1.3": ltls.VersionTLS13}

// tls12Suites are the TLS 1.2 cipher suites offered: forward secret and
// authenticated encryption only (TLS 1.3's suites are all of that kind).
var tls12Suites = []uint16{
	ltls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	ltls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	ltls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	ltls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	ltls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,
	ltls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
}

// tlsLayer is a TLS listener's record layer between the socket engine and
// the listener's protocol (WebSocket or framed TCP), which sees plain
// bytes only and is the same code for plain and TLS listeners. It owns
// the sockets whose TLS handshake is not complete (they carry a *tlsSock
// as their session); once the handshake completes it opens them in the
// protocol, whose transport takes the *tlsSock over (see newSock).
type tlsLayer struct {
	e     *nbioEngine
	h     sockHandler
	certs *certStore

	mu sync.Mutex
	// pending holds the handshakes in progress with their deadlines
	// (unix ns); bounded by the open sockets, each for HandshakeTimeout.
	pending map[*tlsSock]int64
	quit    chan struct{}
	done    chan struct{}
}

// newTLSLayer loads the listener's certificate and returns the layer that
// wraps h. It starts nothing; run does.
func newTLSLayer(e *nbioEngine, h sockHandler) (*tlsLayer, error) {
	cfg := e.l.cfg
	var alpn []string
	if cfg.Protocol == "ws" {
		alpn = []string{"http/1.1"}
	}
	certs, err := newCertStore(cfg.Name, cfg.TLS.WithDefaults(), alpn, e.l.s.log)
	if err != nil {
		return nil, err // Start names the listener
	}
	return &tlsLayer{
		e: e, h: h, certs: certs,
		pending: make(map[*tlsSock]int64),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// run closes late handshakes (checked twice a second) and reloads the
// certificate when its files change, until stop.
func (tl *tlsLayer) run() {
	defer close(tl.done)
	tick := time.NewTicker(min(500*time.Millisecond, tl.certs.cfg.ReloadInterval))
	defer tick.Stop()
	nextCheck := time.Now().Add(tl.certs.cfg.ReloadInterval)
	for {
		select {
		case <-tl.quit:
			return
		case now := <-tick.C:
			tl.sweep(now)
			if !now.Before(nextCheck) {
				tl.certs.check()
				nextCheck = now.Add(tl.certs.cfg.ReloadInterval)
			}
		}
	}
}

// stop ends run and waits for it; it is idempotent.
func (tl *tlsLayer) stop() {
	select {
	case <-tl.quit:
	default:
		close(tl.quit)
	}
	<-tl.done
}

// sweep closes the sockets whose TLS handshake outlived HandshakeTimeout.
func (tl *tlsLayer) sweep(now time.Time) {
	var late []*tlsSock
	tl.mu.Lock()
	for ts, deadline := range tl.pending {
		if now.UnixNano() >= deadline {
			late = append(late, ts)
			delete(tl.pending, ts)
		}
	}
	tl.mu.Unlock()
	tl.e.l.s.stats.refused[refusedHandshakeTimeout].Add(uint64(len(late)))
	for _, ts := range late {
		_ = ts.Conn.Close()
	}
}

func (tl *tlsLayer) handshakeDone(ts *tlsSock) {
	tl.mu.Lock()
	delete(tl.pending, ts)
	tl.mu.Unlock()
}

// open starts a server handshake on a new socket.
func (tl *tlsLayer) open(nc *nbio.Conn) {
	if tl.e.l.s.closing.Load() {
		_ = nc.Close()
		return
	}
	ts := &tlsSock{Conn: nc}
	ts.tc = ltls.NewConn(ts, tl.certs.base, false, true)
	tl.mu.Lock()
	tl.pending[ts] = time.Now().Add(tl.e.l.s.cfg.HandshakeTimeout).UnixNano()
	tl.mu.Unlock()
	nc.SetSession(ts)
}

// data decrypts what arrived and hands the plain bytes to the protocol.
func (tl *tlsLayer) data(nc *nbio.Conn, data []byte) {
	if ts, ok := nc.Session().(*tlsSock); ok {
		tl.handshake(nc, ts, data)
		return
	}
	if s := socketOf(nc); s != nil && s.tls != nil {
		tl.read(nc, s, data)
	}
}

func (tl *tlsLayer) closed(nc *nbio.Conn, err error) {
	if ts, ok := nc.Session().(*tlsSock); ok {
		tl.handshakeDone(ts)
		return
	}
	tl.h.closed(nc, err)
}

// notTLS answers a client that spoke something else than TLS on a TLS
// port: a WebSocket client gets a plain HTTP 400 that says why.
const notTLS = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n" +
	"This port speaks TLS: connect with wss://.\n"

// recordTypeHandshake is the first byte of every TLS ClientHello.
const recordTypeHandshake = 0x16

// handshake feeds a socket's handshake; when it completes, the socket is
// opened in the protocol and the rest of data goes to it.
func (tl *tlsLayer) handshake(nc *nbio.Conn, ts *tlsSock, data []byte) {
	if ts.failed {
		return
	}
	if !ts.started && len(data) > 0 {
		ts.started = true
		if data[0] != recordTypeHandshake {
			tl.fail(ts, nil)
			if tl.e.l.cfg.Protocol == "ws" {
				_, _ = nc.Write([]byte(notTLS))
			}
			_ = nc.Close()
			return
		}
	}
	var done bool
	_, _, err := ts.step(func() (int, error) {
		_, _ = ts.tc.Append(data)
		// A read of nothing runs the handshake as far as the input
		// goes; it returns no error while more input is needed.
		_, err := ts.tc.Read(nil)
		ts.ready = err == nil && ts.tc.ConnectionState().HandshakeComplete
		if ts.ready {
			trimHandshake(ts.tc)
		}
		done = ts.ready
		return 0, err
	})
	if err != nil {
		tl.fail(ts, err)
		_ = nc.Close()
		return
	}
	if !done {
		return // the rest of the handshake has yet to arrive
	}
	tl.handshakeDone(ts)
	tl.h.open(nc) // the protocol's transport takes ts over (newSock)
	if s := socketOf(nc); s != nil && s.tls == ts {
		tl.read(nc, s, nil) // application data that came with the handshake
	}
}

// fail ends a handshake that cannot complete.
func (tl *tlsLayer) fail(ts *tlsSock, err error) {
	ts.failed = true
	tl.handshakeDone(ts)
	tl.e.l.s.stats.refused[refusedTLSHandshake].Add(1)
	if log := tl.e.l.s.log; err != nil && log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("tls handshake failed", "listener", tl.e.l.cfg.Name,
			"remote", ts.Conn.RemoteAddr().String(), "err", err)
	}
}

// readBufs are the plaintext buffers of read: one per poller at a time.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// read appends data to the socket's TLS input and hands every decrypted
// chunk to the protocol. The record layer lock is not held while the
// protocol runs: it may write (a handshake answer, a pong) on this
// goroutine.
func (tl *tlsLayer) read(nc *nbio.Conn, s *sock, data []byte) {
	ts := s.tls
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	if len(data) > 0 {
		if _, _, err := ts.step(func() (int, error) { return ts.tc.Append(data) }); err != nil {
			_ = nc.Close()
			return
		}
	}
	for {
		n, alerts, err := ts.step(func() (int, error) { return ts.tc.Read(buf) })
		if c := s.c; c != nil && alerts > 0 {
			c.unsent.Add(alerts) // records the engine will report as written
		}
		if n > 0 {
			tl.h.data(nc, buf[:n])
		}
		if err != nil {
			// A bad record, or the peer's close_notify: the stream ends.
			_ = nc.Close()
			return
		}
		if n == 0 {
			return
		}
	}
}

// errTLSHandshake is returned by writes on a socket whose handshake is not
// complete; the gateway never writes to one.
var errTLSHandshake = errors.New("gateway: tls handshake not complete")

// tlsSock is one TLS connection's record layer. It is the net.Conn under
// the TLS state machine: the state machine writes its records through
// Write to the engine, which never blocks.
type tlsSock struct {
	*nbio.Conn

	// mu serializes the TLS state between the poller (reads, alerts) and
	// the shard's flusher (writes): the state machine has no locks of its
	// own in non-blocking mode.
	mu     sync.Mutex
	tc     *ltls.Conn
	sent   int64 // record bytes handed to the engine; guarded by mu
	ready  bool  // the handshake is complete; guarded by mu
	broken bool  // the state machine panicked; guarded by mu

	// Owned by the poller goroutine during the handshake.
	started bool // the first bytes arrived
	failed  bool // the handshake failed; discard the rest
}

// Write hands records to the engine. Called by the TLS state machine with
// mu held.
func (ts *tlsSock) Write(b []byte) (int, error) {
	ts.sent += int64(len(b))
	return ts.Conn.Write(b)
}

// step runs f, one call into the TLS state machine, under mu, and also
// returns the record bytes f handed to the engine. A panic in f (the state
// machine is a fork of an old crypto/tls, run on a poller goroutine that
// has no recover) becomes an error that ends this connection, not the
// process; every later step then fails.
func (ts *tlsSock) step(f func() (int, error)) (n int, records int64, err error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.broken {
		return 0, 0, errTLSBroken
	}
	sent := ts.sent
	defer func() {
		records = ts.sent - sent
		if r := recover(); r != nil {
			ts.broken = true
			n, err = 0, fmt.Errorf("%w: %v", errTLSBroken, r)
		}
	}()
	n, err = f()
	return n, 0, err
}

// errTLSBroken is the error of a connection whose TLS state machine
// panicked.
var errTLSBroken = errors.New("gateway: tls state machine failed")

// SetDeadline, SetReadDeadline and SetWriteDeadline do nothing: engine
// writes never block, and the state machine's close_notify would
// otherwise arm the engine's timers.
func (ts *tlsSock) SetDeadline(time.Time) error      { return nil }
func (ts *tlsSock) SetReadDeadline(time.Time) error  { return nil }
func (ts *tlsSock) SetWriteDeadline(time.Time) error { return nil }

// write encrypts b (whole frames) into records and hands them to the
// engine. The connection's unsent count, raised by len(b) by the caller,
// is corrected to the record bytes that the engine will report written.
func (ts *tlsSock) write(s *sock, b []byte) error {
	_, records, err := ts.step(func() (int, error) {
		if !ts.ready {
			return 0, errTLSHandshake
		}
		return ts.tc.Write(b)
	})
	if c := s.c; c != nil {
		c.unsent.Add(records - int64(len(b)))
	}
	return err
}

// closeNotify sends the TLS close_notify alert, before a FIN.
func (ts *tlsSock) closeNotify(s *sock) {
	_, records, _ := ts.step(func() (int, error) { return 0, ts.tc.CloseWrite() })
	if c := s.c; c != nil {
		c.unsent.Add(records)
	}
}
