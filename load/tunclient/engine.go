// Package tunclient is a user-space WebSocket client engine for load
// tests: it drives many thousands of WebSocket clients over one TUN
// device, as their TCP peer, without a kernel socket per client.
//
// The kernel routes the server's packets for the client addresses (any
// of the TUN device's subnet but its own address) to the device; the
// engine reads them, runs a minimal client-side TCP per connection (SYN
// with the MSS option, in-order receive, a fixed window, retransmission
// of its own unacknowledged segments on a coarse timer, FIN and RST) and
// the client half of RFC 6455 (the upgrade with a real
// Sec-WebSocket-Key, checked Sec-WebSocket-Accept, a masked pong for
// every ping, the close handshake). What is real is the server: its
// kernel TCP sockets, its processes and its heartbeats; what is emulated
// are the clients' TCP stacks, so the machine's kernel holds socket
// memory for the server's side only and no client needs a file.
//
// Connection state is a slice of small structs indexed by (address,
// port): no goroutine, timer or map entry per connection.
package tunclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Config configures an Engine. The zero value of each field but Server
// and Conns means its default.
type Config struct {
	// Server is the WebSocket listener the clients connect to: an IPv4
	// address of the TUN device (its own address) and a port.
	Server netip.AddrPort
	// Path is the request path; default "/".
	Path string
	// NoRing reads and writes each packet with a system call of its own
	// instead of through an io_uring per device queue (ring_linux.go).
	NoRing bool
	// Conns is the number of clients.
	Conns int
	// Rate paces the opening: SYNs sent per second, with at most
	// Rate × 100 ms handshakes in flight (at least 2). 0 means 5,000/s;
	// negative means unpaced with at most 1,024 handshakes in flight.
	Rate float64
	// ClientBase is the first client address; client i has address
	// ClientBase + i / PortsPerAddr and port 10000 + i % PortsPerAddr.
	// Default 10.1.0.0. The addresses must route to the TUN device (be in
	// its subnet) and must not include the server's address.
	ClientBase netip.Addr
	// PortsPerAddr is the number of client ports per address, 1 to
	// 55,000; default 50,000.
	PortsPerAddr int
	// RTO is the first retransmission timeout of an unacknowledged
	// segment; it doubles with each retry up to 32 × RTO. Default 1 s.
	RTO time.Duration
	// MaxRetries is the number of retransmissions after which a
	// connection is given up (a handshake fails, an open connection counts
	// as an unexpected close); default 8.
	MaxRetries int
	// RetransmitRate bounds the segments sent again per second, so a
	// burst of losses does not turn into a burst of retransmissions that
	// is lost in turn; the others wait for a later timer tick. Default
	// 4,000/s.
	RetransmitRate float64
	// CloseWait is how long a close we started may wait for the server's
	// close frame and FIN once our close frame is acknowledged; then the
	// client is reset and counted in Stats.CloseTimeouts. Default 30 s.
	CloseWait time.Duration
	// NoTimestamps leaves out the TCP timestamps option (RFC 7323) that
	// every client offers in its SYN and, once the server agrees, sends
	// on every segment. Without it the server cannot measure the round
	// trip of a segment it sent again, so a client that answers later
	// than the server's retransmission timeout (200 ms and up) has every
	// ping sent twice and the timeout never grows (C1M round 9).
	NoTimestamps bool
	// Seed makes the initial sequence numbers and WebSocket keys
	// reproducible; 0 means random.
	Seed uint64
	// Pause, when set, is asked before each batch of SYNs (every 5 ms):
	// while it returns true no new handshake starts and no rate credit
	// accrues, so the open resumes at Rate, not with a burst. gwload
	// uses it to wait while the machine is too busy (--open-min-idle).
	Pause func() bool
}

// Stats are an Engine's counters.
type Stats struct {
	Started int    `json:"started"` // SYNs sent for the first time
	Opened  uint64 `json:"opened"`  // upgrades answered with a valid 101
	// Timestamps counts handshakes in which the server agreed to TCP
	// timestamps (Config.NoTimestamps off).
	Timestamps uint64 `json:"timestamps"`
	Failed     uint64 `json:"failed"`   // handshakes given up, reset or refused
	Live       int    `json:"live"`     // open connections (opened, not yet ended)
	InFlight   int    `json:"inflight"` // handshakes in flight
	// PausedMs is how long Open waited on Config.Pause, in milliseconds.
	PausedMs int64 `json:"paused_ms"`
	// Unexpected counts open connections that ended without our close:
	// a close frame, FIN or RST from the server, a protocol error, or
	// retransmissions given up (the four counters below add up to it).
	Unexpected   uint64 `json:"unexpected"`
	ServerCloses uint64 `json:"server_closes"` // close frames we did not ask for
	GoingAway    uint64 `json:"going_away"`    // of those, with code 1001 (a server that stops)
	ServerFINs   uint64 `json:"server_fins"`   // FINs without a close frame
	Resets       uint64 `json:"resets"`        // RSTs to open connections
	Timeouts     uint64 `json:"timeouts"`      // retransmissions given up, protocol errors
	// Closed counts orderly closes we started that completed: our close
	// frame answered, FINs exchanged and acknowledged.
	Closed uint64 `json:"closed"`
	// CloseTimeouts counts closes we started that the server did not
	// finish within Config.CloseWait (the client was reset).
	CloseTimeouts uint64 `json:"close_timeouts"`
	// CloseResets counts closes we started that the server answered
	// with a RST: after its FIN when its socket is gone before our FIN
	// arrives (more than net.ipv4.tcp_max_tw_buckets in TIME_WAIT), or
	// before it (a pong arriving after it closed).
	CloseResets uint64 `json:"close_resets"`
	Pings       uint64 `json:"pings"`       // pings received (each answered with a pong)
	Messages    uint64 `json:"messages"`    // final data frames received
	Retransmits uint64 `json:"retransmits"` // segments sent again
	Dups        uint64 `json:"dups"`        // duplicate or out-of-order segments re-acknowledged
	BadPackets  uint64 `json:"bad_packets"` // packets that did not parse
	// FirstError describes the first failed handshake or unexpected close.
	FirstError string `json:"first_error,omitempty"`
}

// Connection states.
const (
	stFree    uint8 = iota // not started
	stSynSent              // SYN sent
	stUpgrade              // established, upgrade request sent, no 101 yet
	stOpen                 // WebSocket open
	stClosing              // our close frame sent
	stFinWait              // our FIN sent after the server's, not yet acknowledged
	stDone                 // ended
	stFailed               // never opened
)

// Connection flags.
const (
	fCloseSent uint8 = 1 << iota // we sent a close frame
	fFinSent                     // we sent a FIN
	fEnded                       // counted as ended (Live decremented)
	fInitiated                   // we started the close (Close)
	fTS                          // timestamps agreed in the handshake
)

// conn is one client's state: 72 bytes, most of it two byte slices that
// are nil while nothing is unacknowledged or partly received.
type conn struct {
	out      []byte // sent and not acknowledged, from sndUna (FIN excluded)
	in       []byte // received in order and not yet parsed
	sndUna   uint32
	sndNxt   uint32
	rcvNxt   uint32
	lastTx   uint32 // ms clock of the last (re)transmission
	tsRecent uint32 // the server's last timestamp, echoed (fTS)
	state    uint8
	flags    uint8
	tries    uint8
}

// Segment constants: the window we advertise (fixed: everything is
// consumed as it arrives) and the most payload per segment we send.
const (
	window  = 65535
	ourMSS  = 1460
	maxSend = 1400
)

// closeCode is the payload of our close frame: 1000, normal closure.
var closeCode = []byte{0x03, 0xe8}

// Engine drives Config.Conns WebSocket clients over Links. Open opens
// them, Close closes them in order, Stop ends everything.
type Engine struct {
	cfg   Config
	links []Link
	srv   uint32 // server address
	sport uint16
	base  uint32
	host  string
	seed  uint64
	start time.Time

	mu    sync.Mutex
	conns []conn
	// behind is, per link, the ms clock at which its reader found the
	// device with more packets queued than one batch takes, 0 while it
	// keeps up (ringLoop). An acknowledgement may then be waiting in the
	// device's queue, so scan retransmits only what was due before that:
	// clients on machines of their own read the ACKs that reached them
	// before their timers fire, and here the device queue is the wire.
	behind   []uint32
	stats    Stats
	closing  int // closes we started that have not ended
	rng      *rand.Rand
	stopTick chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New returns an engine for cfg over links (the queues of a TUN device;
// at least one). Start runs it; the engine closes the links in Stop.
func New(cfg Config, links ...Link) (*Engine, error) {
	if len(links) == 0 {
		return nil, errors.New("tunclient: no link")
	}
	if !cfg.Server.Addr().Is4() {
		return nil, fmt.Errorf("tunclient: server %s is not IPv4", cfg.Server)
	}
	if cfg.Conns <= 0 {
		return nil, fmt.Errorf("tunclient: %d connections", cfg.Conns)
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.Rate == 0 {
		cfg.Rate = 5000
	}
	if !cfg.ClientBase.IsValid() {
		cfg.ClientBase = netip.AddrFrom4([4]byte{10, 1, 0, 0})
	}
	if !cfg.ClientBase.Is4() {
		return nil, fmt.Errorf("tunclient: client base %s is not IPv4", cfg.ClientBase)
	}
	if cfg.PortsPerAddr == 0 {
		cfg.PortsPerAddr = 50_000
	}
	if cfg.PortsPerAddr < 1 || cfg.PortsPerAddr > 55_000 {
		return nil, fmt.Errorf("tunclient: %d ports per address (1 to 55,000)", cfg.PortsPerAddr)
	}
	if cfg.RTO <= 0 {
		cfg.RTO = time.Second
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 8
	}
	if cfg.RetransmitRate <= 0 {
		cfg.RetransmitRate = 4000
	}
	if cfg.CloseWait <= 0 {
		cfg.CloseWait = 30 * time.Second
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	e := &Engine{cfg: cfg, links: links, sport: cfg.Server.Port(), host: cfg.Server.String(), seed: seed,
		start: time.Now(), conns: make([]conn, cfg.Conns), behind: make([]uint32, len(links)), rng: rand.New(rand.NewPCG(seed, seed>>1|1)),
		stopTick: make(chan struct{})}
	s4, b4 := cfg.Server.Addr().As4(), cfg.ClientBase.As4()
	e.srv, e.base = binary.BigEndian.Uint32(s4[:]), binary.BigEndian.Uint32(b4[:])
	last := e.base + uint32((cfg.Conns-1)/cfg.PortsPerAddr)
	if e.srv >= e.base && e.srv <= last {
		return nil, fmt.Errorf("tunclient: server address %s is among the client addresses", cfg.Server.Addr())
	}
	return e, nil
}

// Start starts one reader per link and the retransmission timer.
func (e *Engine) Start() {
	for i, l := range e.links {
		e.wg.Go(func() { e.readLoop(i, l) })
	}
	e.wg.Go(e.tickLoop)
}

// Stop closes the links and waits for the engine's goroutines. The
// clients are left as they are (Close first for an orderly end).
func (e *Engine) Stop() error {
	var err error
	e.stopOnce.Do(func() {
		close(e.stopTick)
		for _, l := range e.links {
			if c, ok := l.(interface{ Close() error }); ok {
				err = errors.Join(err, c.Close())
			}
		}
		e.wg.Wait()
	})
	return err
}

// Stats returns the counters so far.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// now is the engine's millisecond clock.
func (e *Engine) now() uint32 { return uint32(time.Since(e.start) / time.Millisecond) }

// addr returns client idx's address and port.
func (e *Engine) addr(idx int) (uint32, uint16) {
	p := e.cfg.PortsPerAddr
	return e.base + uint32(idx/p), uint16(10000 + idx%p)
}

// index returns the client with address a and port p, if any.
func (e *Engine) index(a uint32, p uint16) (int, bool) {
	if a < e.base || p < 10000 || int(p-10000) >= e.cfg.PortsPerAddr {
		return 0, false
	}
	idx := int(a-e.base)*e.cfg.PortsPerAddr + int(p-10000)
	return idx, idx < len(e.conns)
}

// outBuf collects the packets built under the lock, written after it.
type outBuf struct {
	buf  []byte
	ends []int
}

func (o *outBuf) flush(l Link) error {
	var err error
	start := 0
	for _, end := range o.ends {
		if werr := l.WritePacket(o.buf[start:end]); werr != nil && err == nil {
			err = werr
		}
		start = end
	}
	o.buf, o.ends = o.buf[:0], o.ends[:0]
	return err
}

// emit builds one segment of client idx: sequence seq, its current
// rcvNxt as the acknowledgement.
func (e *Engine) emit(o *outBuf, idx int, c *conn, seq uint32, flags uint8, payload []byte) {
	e.emitAck(o, idx, c, seq, c.rcvNxt, flags, payload)
}

// emitAck is emit with acknowledgement ack instead of rcvNxt. A SYN
// carries the MSS option and offers timestamps; every later segment
// carries timestamps if the server agreed.
func (e *Engine) emitAck(o *outBuf, idx int, c *conn, seq, ack uint32, flags uint8, payload []byte) {
	a, p := e.addr(idx)
	syn := flags&flagSYN != 0
	var mss uint16
	if syn {
		mss = ourMSS
	}
	var ts tsOption
	if c.flags&fTS != 0 || (syn && !e.cfg.NoTimestamps) {
		ts = tsOption{val: e.now(), ecr: c.tsRecent, ok: true}
	}
	o.buf = appendSegment(o.buf, a, e.srv, p, e.sport, seq, ack, flags, window, mss, ts, payload)
	o.ends = append(o.ends, len(o.buf))
}

// send sends new data (and our FIN if fin) of client idx after what is
// in flight, and keeps it for retransmission.
func (e *Engine) send(o *outBuf, idx int, c *conn, data []byte, fin bool) {
	if len(c.out) == 0 && c.sndUna == c.sndNxt {
		c.lastTx, c.tries = e.now(), 0
	}
	c.out = append(c.out, data...)
	for len(data) > maxSend {
		e.emit(o, idx, c, c.sndNxt, flagACK|flagPSH, data[:maxSend])
		c.sndNxt += maxSend
		data = data[maxSend:]
	}
	flags := uint8(flagACK)
	if len(data) > 0 {
		flags |= flagPSH
	}
	if fin {
		flags |= flagFIN
		c.flags |= fFinSent
	}
	e.emit(o, idx, c, c.sndNxt, flags, data)
	c.sndNxt += uint32(len(data))
	if fin {
		c.sndNxt++
	}
}

// retransmit sends client idx's oldest unacknowledged segment again.
func (e *Engine) retransmit(o *outBuf, idx int, c *conn) {
	e.stats.Retransmits++
	if c.state == stSynSent {
		e.emit(o, idx, c, c.sndUna, flagSYN, nil)
		return
	}
	data := c.out[:min(len(c.out), maxSend)]
	flags := uint8(flagACK)
	if len(data) > 0 {
		flags |= flagPSH
	}
	if c.flags&fFinSent != 0 && len(data) == len(c.out) {
		flags |= flagFIN
	}
	e.emit(o, idx, c, c.sndUna, flags, data)
}

// note records the first error.
func (e *Engine) note(idx int, format string, args ...any) {
	if e.stats.FirstError == "" {
		a, p := e.addr(idx)
		e.stats.FirstError = fmt.Sprintf("client %d (%d.%d.%d.%d:%d): ", idx, a>>24, a>>16&0xff, a>>8&0xff, a&0xff, p) + fmt.Sprintf(format, args...)
	}
}

// fail gives up a handshake; rst also resets the server's side.
func (e *Engine) fail(o *outBuf, idx int, c *conn, rst bool, format string, args ...any) {
	if rst {
		e.emit(o, idx, c, c.sndNxt, flagRST|flagACK, nil)
	}
	e.note(idx, format, args...)
	e.stats.Failed++
	e.stats.InFlight--
	c.state, c.out, c.in = stFailed, nil, nil
}

// setDone ends client c's state; a close we started is no longer pending.
func (e *Engine) setDone(c *conn) {
	if c.flags&fInitiated != 0 && c.state != stDone {
		e.closing--
	}
	c.state, c.out, c.in = stDone, nil, nil
}

// ended counts an open connection as ended once; unexpected tells
// whether we had not started its close.
func (e *Engine) ended(idx int, c *conn, counter *uint64, format string, args ...any) {
	if c.flags&fEnded != 0 {
		return
	}
	c.flags |= fEnded
	e.stats.Live--
	if c.flags&fInitiated == 0 {
		e.stats.Unexpected++
		*counter++
		e.note(idx, format, args...)
	}
}

// Open starts the handshakes of every client, paced at Config.Rate, and
// returns when each has opened or failed, or when ctx ends (the error
// then says how far it got). Call it once, after Start.
func (e *Engine) Open(ctx context.Context) error {
	n := len(e.conns)
	rate := e.cfg.Rate
	maxInFlight := 1024
	if rate > 0 {
		maxInFlight = max(int(rate/10), 2)
	}
	var o outBuf
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last, tokens := time.Now(), 1.0
	var paused time.Duration
	next := 0
	for next < n {
		now := time.Now()
		if e.cfg.Pause != nil && e.cfg.Pause() {
			paused += now.Sub(last)
			e.mu.Lock()
			e.stats.PausedMs = paused.Milliseconds()
			e.mu.Unlock()
			last = now
			select {
			case <-ctx.Done():
				return fmt.Errorf("tunclient: open stopped (paused) after %d of %d SYNs: %w", next, n, context.Cause(ctx))
			case <-tick.C:
			}
			continue
		}
		if rate > 0 {
			tokens = min(tokens+rate*now.Sub(last).Seconds(), float64(maxInFlight))
		} else {
			tokens = float64(n)
		}
		last = now
		e.mu.Lock()
		for next < n && tokens >= 1 && e.stats.InFlight < maxInFlight {
			c := &e.conns[next]
			iss := e.rng.Uint32()
			c.sndUna, c.sndNxt, c.state, c.lastTx = iss, iss+1, stSynSent, e.now()
			e.emit(&o, next, c, iss, flagSYN, nil)
			e.stats.Started++
			e.stats.InFlight++
			next++
			tokens--
		}
		e.mu.Unlock()
		if err := o.flush(e.links[0]); err != nil {
			return fmt.Errorf("tunclient: open: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: open stopped after %d of %d SYNs: %w", next, n, context.Cause(ctx))
		case <-tick.C:
		}
	}
	for {
		st := e.Stats()
		if st.InFlight == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: open stopped with %d handshakes in flight: %w", st.InFlight, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// Close closes every open client in order, paced at rate per second (0
// or negative: unpaced): a close frame with code 1000, then the server's
// close frame and FIN are answered with our FIN. It returns when every
// such close completed or its connection ended otherwise, or when ctx
// ends.
func (e *Engine) Close(ctx context.Context, rate float64) error {
	var o outBuf
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last, tokens := time.Now(), 1.0
	next := 0
	for next < len(e.conns) {
		now := time.Now()
		if rate > 0 {
			tokens = min(tokens+rate*now.Sub(last).Seconds(), rate)
		} else {
			tokens = float64(len(e.conns))
		}
		last = now
		e.mu.Lock()
		for ; next < len(e.conns) && tokens >= 1; next++ {
			c := &e.conns[next]
			if c.state != stOpen {
				continue
			}
			c.flags |= fInitiated | fCloseSent
			c.state = stClosing
			e.closing++
			e.send(&o, next, c, appendMasked(nil, opClose, e.rng.Uint32(), closeCode), false)
			tokens--
		}
		e.mu.Unlock()
		if err := o.flush(e.links[0]); err != nil {
			return fmt.Errorf("tunclient: close: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: close stopped after %d of %d clients: %w", next, len(e.conns), context.Cause(ctx))
		case <-tick.C:
		}
	}
	for {
		e.mu.Lock()
		left := e.closing
		e.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunclient: %d closes not completed: %w", left, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// tickLoop retransmits what is unacknowledged for too long, in chunks so
// the readers are not held up by a scan of every client.
func (e *Engine) tickLoop() {
	period := min(max(e.cfg.RTO/2, 10*time.Millisecond), 500*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	var o outBuf
	const chunk = 8192
	perTick := max(int(e.cfg.RetransmitRate*period.Seconds()), 1)
	for {
		select {
		case <-e.stopTick:
			return
		case <-t.C:
		}
		budget := perTick
		for lo := 0; lo < len(e.conns); lo += chunk {
			e.mu.Lock()
			e.scan(&o, lo, min(lo+chunk, len(e.conns)), &budget)
			e.mu.Unlock()
			_ = o.flush(e.links[0]) // lost again: the next scan retries
		}
	}
}

// scan retransmits for clients lo to hi-1, at most *budget segments, and
// resets closes that waited longer than Config.CloseWait.
func (e *Engine) scan(o *outBuf, lo, hi int, budget *int) {
	now := e.now()
	for _, b := range e.behind {
		if b != 0 && seqLT(b, now) {
			now = b // an ACK sent since may not have been read yet
		}
	}
	rto := uint32(e.cfg.RTO / time.Millisecond)
	closeWait := uint32(e.cfg.CloseWait / time.Millisecond)
	for i := lo; i < hi; i++ {
		c := &e.conns[i]
		switch c.state {
		case stSynSent, stUpgrade, stOpen, stClosing, stFinWait:
		default:
			continue
		}
		if c.state != stSynSent && c.sndUna == c.sndNxt {
			if c.state == stClosing && now-c.lastTx >= closeWait {
				e.stats.CloseTimeouts++
				e.emit(o, i, c, c.sndNxt, flagRST|flagACK, nil)
				e.ended(i, c, &e.stats.Timeouts, "no close from the server")
				e.setDone(c)
			}
			continue
		}
		if now-c.lastTx < rto<<min(c.tries, 5) {
			continue
		}
		if int(c.tries) >= e.cfg.MaxRetries {
			switch c.state {
			case stSynSent, stUpgrade:
				e.fail(o, i, c, c.state == stUpgrade, "handshake given up after %d retransmissions", c.tries)
			default:
				e.ended(i, c, &e.stats.Timeouts, "given up after %d retransmissions", c.tries)
				e.emit(o, i, c, c.sndNxt, flagRST|flagACK, nil)
				e.setDone(c)
			}
			continue
		}
		if *budget <= 0 {
			continue // due: sent at a later tick
		}
		*budget--
		c.tries++
		c.lastTx = now
		e.retransmit(o, i, c)
	}
}
