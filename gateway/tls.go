package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
)

// TLSConfig turns a listener into a TLS listener (wss:// for ws, TCP+TLS
// for tcp), served by the Go standard library's crypto/tls. The
// certificate files are read when the listener starts and again whenever
// they change (see ReloadInterval). The handshake runs on a short-lived
// goroutine (a bounded number of them per listener); records of an open
// connection are decrypted on the event loop, with no goroutine per
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
var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// tls12Suites are the TLS 1.2 cipher suites offered: the forward secret,
// authenticated encryption ones of Go's defaults (which also has CBC
// suites); TLS 1.3's suites are all of that kind and not configurable.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
}

// maxHandshakes bounds the TLS handshakes a listener runs at once, each on
// a goroutine of its own (about 8–32 KiB of stack) that starts once the
// first record of the ClientHello is complete and ends with the
// handshake. A socket whose ClientHello arrives while that many run waits
// in a queue for one to end; its handshake timeout runs meanwhile, and a
// running handshake that has waited handshakeStall for its client then
// gives its goroutine up (it is closed). A
// listener takes the value when it starts (tests lower it).
var maxHandshakes = 1024

// handshakeStall is how long a handshake goroutine may wait for its
// client's next flight while other sockets queue for one: a client that
// sends a ClientHello and then nothing would otherwise hold one of the
// listener's maxHandshakes goroutines for the whole HandshakeTimeout, and
// about maxHandshakes/HandshakeTimeout such clients a second would keep
// every other client from a handshake. With no queue, a slow client keeps
// its goroutine until HandshakeTimeout (a client certificate may wait for
// a user, a link may be slow). A closed one counts as handshake_timeout.
const handshakeStall = time.Second

// maxHandshakeInput bounds the bytes a client may send ahead of its
// handshake (crypto/tls reads at most a 64 KiB handshake message, split
// into records); a client that sends more is closed.
const maxHandshakeInput = 96 << 10

// tlsLayer is a TLS listener's record layer between the socket engine and
// the listener's protocol (WebSocket or framed TCP), which sees plain
// bytes only and is the same code for plain and TLS listeners. Every
// socket of a TLS listener carries a *tlsSock as its session. The
// handshake runs on a handshake goroutine reading what the event loop
// feeds it; once it completes, that goroutine opens the socket in the
// protocol (whose transport the tlsSock then carries, see setTransport),
// and from then on the event loop decrypts the records as they arrive.
type tlsLayer struct {
	e     *nbioEngine
	h     sockHandler
	certs *certStore

	mu sync.Mutex
	// pending holds the handshakes in progress with their deadlines
	// (unix ns); bounded by the open sockets, each for HandshakeTimeout.
	pending map[*tlsSock]int64
	// queue holds the sockets waiting for a handshake goroutine; running
	// counts those goroutines, at most maxHandshakes.
	queue   []*tlsSock
	running int
	max     int // maxHandshakes when the listener started
	// takeovers counts the TLS 1.3 connections whose records went to the
	// record layer of tls13.go after the handshake.
	takeovers atomic.Int64
	// hot lists the TLS 1.3 record layers that have their AEADs; run drops
	// those of the quiet ones.
	hot     hotList
	workers sync.WaitGroup
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
		max:     maxHandshakes,
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
			tl.hot.sweep()
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

// sweep closes the sockets whose TLS handshake outlived HandshakeTimeout,
// whether it waits for a handshake goroutine or for the client.
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
	late = append(late, tl.stalled(now)...)
	tl.e.l.s.stats.refused[refusedHandshakeTimeout].Add(uint64(len(late)))
	for _, ts := range late {
		_ = ts.Conn.Close()
	}
}

// stalled takes out of pending, and returns, the running handshakes that
// have waited for their client for handshakeStall or longer, at most as
// many as sockets queue for a handshake goroutine (none without a queue).
func (tl *tlsLayer) stalled(now time.Time) []*tlsSock {
	tl.mu.Lock()
	queued := len(tl.queue)
	var shaking []*tlsSock
	if queued > 0 {
		shaking = make([]*tlsSock, 0, len(tl.pending))
		for ts := range tl.pending {
			shaking = append(shaking, ts)
		}
	}
	tl.mu.Unlock()
	var out []*tlsSock
	for _, ts := range shaking {
		if len(out) == queued {
			break
		}
		ts.mu.Lock()
		w := ts.waiting
		ts.mu.Unlock()
		if w != 0 && now.UnixNano()-w >= int64(handshakeStall) && tl.handshakeDone(ts) {
			out = append(out, ts)
		}
	}
	return out
}

// handshakeDone stops watching ts's handshake and reports whether it was
// watched (not yet timed out or ended).
func (tl *tlsLayer) handshakeDone(ts *tlsSock) bool {
	tl.mu.Lock()
	_, ok := tl.pending[ts]
	delete(tl.pending, ts)
	tl.mu.Unlock()
	return ok
}

// open sets up the TLS state of a new socket; the handshake starts when
// its first bytes arrive.
func (tl *tlsLayer) open(nc *nbio.Conn) {
	if tl.e.l.s.closing.Load() {
		_ = nc.Close()
		return
	}
	ts := &tlsSock{Conn: nc}
	ts.tc = tls.Server(ts, tl.certs.base)
	tl.mu.Lock()
	tl.pending[ts] = time.Now().Add(tl.e.l.s.cfg.HandshakeTimeout).UnixNano()
	tl.mu.Unlock()
	nc.SetSession(ts)
}

// notTLS answers a client that spoke something else than TLS on a TLS
// port: a WebSocket client gets a plain HTTP 400 that says why.
const notTLS = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n" +
	"This port speaks TLS: connect with wss://.\n"

// recordTypeHandshake is the first byte of every TLS ClientHello.
const recordTypeHandshake = 0x16

// data feeds what arrived to the handshake, or decrypts it and hands the
// plain bytes to the protocol. It runs on the socket's poller.
func (tl *tlsLayer) data(nc *nbio.Conn, data []byte) {
	ts, _ := nc.Session().(*tlsSock)
	if ts == nil || len(data) == 0 {
		return
	}
	ts.mu.Lock()
	switch ts.state {
	case tlsDead:
		ts.mu.Unlock()
	case tlsNew, tlsShaking:
		if ts.state == tlsNew && len(ts.in) == 0 && data[0] != recordTypeHandshake {
			ts.state = tlsDead
			ts.mu.Unlock()
			tl.fail(ts, nil)
			if tl.e.l.cfg.Protocol == "ws" {
				_, _ = nc.Write([]byte(notTLS))
			}
			_ = nc.Close()
			return
		}
		if len(ts.in)+len(data) > maxHandshakeInput {
			ts.mu.Unlock()
			tl.fail(ts, errHandshakeInput)
			_ = nc.Close()
			return
		}
		ts.in = append(ts.in, data...)
		if ts.state == tlsShaking {
			ts.wake.Signal()
			ts.mu.Unlock()
			return
		}
		if !recordComplete(ts.in) {
			ts.mu.Unlock() // a slow ClientHello holds no goroutine
			return
		}
		ts.state = tlsShaking
		ts.wake = sync.NewCond(&ts.mu)
		ts.mu.Unlock()
		tl.enqueue(ts)
	default: // tlsOpen
		ts.mu.Unlock()
		ts.rmu.Lock()
		tl.read(nc, ts, data)
		ts.rmu.Unlock()
	}
}

// recordComplete reports whether b starts with a whole TLS record, or
// with the header of one longer than TLS allows (which crypto/tls then
// refuses at once).
func recordComplete(b []byte) bool {
	if len(b) < 5 {
		return false
	}
	n := int(b[3])<<8 | int(b[4])
	return n > maxRecordLen || len(b) >= 5+n
}

// maxRecordLen is the longest record payload TLS allows (RFC 5246 §6.2.3:
// 2^14 plus 2048 of expansion).
const maxRecordLen = 1<<14 + 2048

// errHandshakeInput is a client that sent more than a handshake takes.
var errHandshakeInput = errors.New("gateway: tls: too much input during the handshake")

// closed ends a socket's handshake, or closes its connection.
func (tl *tlsLayer) closed(nc *nbio.Conn, err error) {
	ts, _ := nc.Session().(*tlsSock)
	if ts == nil {
		return
	}
	ts.mu.Lock()
	st := ts.state
	if st != tlsOpen {
		ts.state = tlsDead
		ts.in = nil
		if ts.wake != nil {
			ts.wake.Broadcast() // the handshake's read fails
		}
	}
	ts.mu.Unlock()
	if st != tlsOpen {
		tl.handshakeDone(ts)
		return
	}
	ts.rmu.Lock()
	tl.h.closed(nc, err)
	ts.rmu.Unlock()
}

// enqueue hands ts to a handshake goroutine, starting one if fewer than
// maxHandshakes run, or else queues it.
func (tl *tlsLayer) enqueue(ts *tlsSock) {
	tl.mu.Lock()
	if tl.running >= tl.max {
		tl.queue = append(tl.queue, ts)
		tl.mu.Unlock()
		return
	}
	tl.running++
	tl.workers.Add(1)
	tl.mu.Unlock()
	go tl.shake(ts)
}

// shake runs the handshake of ts, then those of the queued sockets, until
// the queue is empty.
func (tl *tlsLayer) shake(ts *tlsSock) {
	defer tl.workers.Done()
	for ts != nil {
		tl.handshake(ts)
		tl.mu.Lock()
		ts = nil
		if len(tl.queue) > 0 {
			ts = tl.queue[0]
			tl.queue[0] = nil
			tl.queue = tl.queue[1:]
		} else {
			tl.queue = nil
			tl.running--
		}
		tl.mu.Unlock()
	}
}

// handshake runs the server handshake of ts on the calling goroutine,
// which blocks reading until the event loop feeds the client's bytes, and
// then opens the socket in the protocol with what followed the
// handshake. A socket closed meanwhile is left alone.
func (tl *tlsLayer) handshake(ts *tlsSock) {
	if err := ts.tc.Handshake(); err != nil {
		ts.mu.Lock()
		ts.state, ts.in, ts.wake = tlsDead, nil, nil
		ts.mu.Unlock()
		tl.fail(ts, err)
		_ = ts.Conn.Close()
		return
	}
	if st := ts.tc.ConnectionState(); st.Version == tls.VersionTLS13 && ts.kc != nil {
		rl, err := ts.kc.records(st.CipherSuite, &tl.hot)
		if err == nil {
			ts.rl, ts.tc = rl, nil // the tls.Conn and its buffers are garbage
			tl.takeovers.Add(1)
		} else if log := tl.e.l.s.log; log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("tls 1.3 records stay on crypto/tls", "listener", tl.e.l.cfg.Name, "err", err)
		}
	}
	ts.kc = nil
	ts.rmu.Lock()
	defer ts.rmu.Unlock()
	ts.mu.Lock()
	if ts.state == tlsDead {
		ts.mu.Unlock()
		return // closed while the handshake ended
	}
	ts.state, ts.wake = tlsOpen, nil
	ts.mu.Unlock()
	tl.handshakeDone(ts)
	tl.h.open(ts.Conn) // the protocol's transport takes ts over (newSock)
	if s := socketOf(ts.Conn); s != nil && s.tls == ts {
		tl.read(ts.Conn, ts, nil) // application data that came with the handshake
	}
}

// fail counts and logs a handshake that cannot complete, unless it timed
// out or the client left (counted or not counted elsewhere).
func (tl *tlsLayer) fail(ts *tlsSock, err error) {
	if !tl.handshakeDone(ts) {
		return
	}
	tl.e.l.s.stats.refused[refusedTLSHandshake].Add(1)
	if log := tl.e.l.s.log; err != nil && log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("tls handshake failed", "listener", tl.e.l.cfg.Name,
			"remote", ts.Conn.RemoteAddr().String(), "err", err)
	}
}

// readBufs are the plaintext buffers of read, one per reading goroutine
// at a time; a record holds at most 16 KiB.
var readBufs = sync.Pool{New: func() any { b := make([]byte, maxCiphertextTLS13); return &b }}

// read feeds data to the socket's TLS input and hands every decrypted
// chunk to the protocol, until the input holds no complete record. The
// caller holds ts.rmu. Decrypting may also write (an alert, a reply to a
// TLS 1.3 KeyUpdate), as the protocol may (a pong).
func (tl *tlsLayer) read(nc *nbio.Conn, ts *tlsSock, data []byte) {
	ts.feed(data)
	defer ts.keep()
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	if ts.rl != nil {
		tl.readRecords(nc, ts, buf)
		return
	}
	for {
		n, err := ts.tc.Read(buf)
		if n > 0 {
			tl.h.data(nc, buf[:n])
		}
		if err != nil {
			if !errors.Is(err, errTLSDrained) {
				// A bad record, or the peer's close_notify: the stream ends.
				_ = nc.Close()
			}
			return
		}
	}
}

// readRecords decrypts the complete records fed to a TLS 1.3 socket with
// its record layer and hands their data to the protocol; buf takes the
// plaintext of one record. A record the connection cannot take is
// answered with its alert; it, or the peer's close_notify or alert,
// closes the socket.
func (tl *tlsLayer) readRecords(nc *nbio.Conn, ts *tlsSock, buf []byte) {
	for {
		rec, err := ts.nextRecord()
		if rec == nil && err == nil {
			return // nothing, or a partial record, left
		}
		var plain []byte
		if err == nil {
			plain, err = ts.rl.readRecord(ts, buf[:0], rec)
		}
		if len(plain) > 0 {
			tl.h.data(nc, plain)
		}
		if err != nil {
			if a, ok := err.(alertError); ok {
				ts.rl.sendAlert(ts, byte(a))
			}
			_ = nc.Close()
			return
		}
	}
}
