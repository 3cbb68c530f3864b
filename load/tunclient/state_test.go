package tunclient

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// pipeLink is a link whose other end is the test, playing the server
// with packets it builds.
type pipeLink struct {
	in   chan []byte // to the engine
	out  chan []byte // from the engine
	once sync.Once
}

func newPipe() *pipeLink { return &pipeLink{in: make(chan []byte, 64), out: make(chan []byte, 1024)} }

func (p *pipeLink) ReadPacket(b []byte) (int, error) {
	pkt, ok := <-p.in
	if !ok {
		return 0, errors.New("closed")
	}
	return copy(b, pkt), nil
}

func (p *pipeLink) WritePacket(b []byte) error {
	p.out <- bytes.Clone(b)
	return nil
}

func (p *pipeLink) Close() error {
	p.once.Do(func() { close(p.in) })
	return nil
}

// fakeServer is the server's end of one connection in a state test.
type fakeServer struct {
	t        *testing.T
	p        *pipeLink
	cli      uint32
	cport    uint16
	seq, ack uint32
}

const testSrv = 0x0a4d0001 // 10.77.0.1

// next returns the engine's next packet.
func (f *fakeServer) next() segment {
	f.t.Helper()
	select {
	case b := <-f.p.out:
		if !checksumOK(b) {
			f.t.Fatalf("packet with a bad checksum: % x", b)
		}
		s, err := parseSegment(b)
		if err != nil {
			f.t.Fatal(err)
		}
		return s
	case <-time.After(5 * time.Second):
		f.t.Fatal("no packet from the engine")
	}
	return segment{}
}

// send sends a segment with the server's current seq and ack.
func (f *fakeServer) send(seq uint32, flags uint8, payload string) {
	f.p.in <- appendSegment(nil, testSrv, f.cli, 30000, f.cport, seq, f.ack, flags, window, 0, tsOption{}, []byte(payload))
}

// waitStats polls e until cond holds.
func waitStats(t *testing.T, e *Engine, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := e.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// handshake runs one client up to an open WebSocket.
func handshake(t *testing.T, closeWait time.Duration) (*Engine, *fakeServer) {
	t.Helper()
	p := newPipe()
	e, err := New(Config{Server: netip.MustParseAddrPort("10.77.0.1:30000"), Conns: 1, Rate: -1, RTO: time.Hour, Seed: 9, CloseWait: closeWait}, p)
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(func() { _ = e.Stop() })
	go func() { _ = e.Open(t.Context()) }()
	f := &fakeServer{t: t, p: p, seq: 1000}
	syn := f.next()
	if syn.flags != flagSYN || syn.mss != ourMSS || syn.dst != testSrv || syn.dstPort != 30000 {
		t.Fatalf("first packet %+v, want a SYN with the MSS option", syn)
	}
	f.cli, f.cport, f.ack = syn.src, syn.srcPort, syn.seq+1
	f.send(f.seq, flagSYN|flagACK, "")
	f.seq++
	req := f.next()
	if req.flags&flagACK == 0 || req.ack != f.seq || req.seq != f.ack || !strings.HasPrefix(string(req.payload), "GET / HTTP/1.1\r\n") {
		t.Fatalf("after the SYN-ACK: %+v %q", req, req.payload)
	}
	key := wsKey(9, 0)
	if !bytes.Contains(req.payload, key[:]) {
		t.Fatalf("request without the client's key: %q", req.payload)
	}
	f.ack += uint32(len(req.payload))
	resp := response(key[:], "") + "\x89\x02hi"
	f.send(f.seq, flagACK|flagPSH, resp)
	f.seq += uint32(len(resp))
	pong := f.next()
	if len(pong.payload) != 8 || pong.payload[0] != 0x8a || pong.payload[1] != 0x82 || pong.ack != f.seq {
		t.Fatalf("answer to the 101 and a ping: %+v % x", pong, pong.payload)
	}
	f.ack += uint32(len(pong.payload))
	waitStats(t, e, func(s Stats) bool { return s.Opened == 1 && s.Live == 1 && s.Pings == 1 && s.InFlight == 0 })
	return e, f
}

// TestStatesOrderlyClose: open, duplicate and out-of-order segments
// re-acknowledged, a message, our close, the server's close and FIN, our
// FIN acknowledged: one orderly close, nothing unexpected.
func TestStatesOrderlyClose(t *testing.T) {
	e, f := handshake(t, 0)
	// A duplicate of old data and a segment after a gap: both only re-acked.
	f.send(f.seq-4, flagACK|flagPSH, "\x89\x02hi")
	if s := f.next(); s.ack != f.seq || len(s.payload) != 0 {
		t.Fatalf("answer to a duplicate: %+v", s)
	}
	f.send(f.seq+10, flagACK|flagPSH, "\x81\x01x")
	if s := f.next(); s.ack != f.seq || len(s.payload) != 0 {
		t.Fatalf("answer to a segment after a gap: %+v", s)
	}
	// A message split over two segments.
	f.send(f.seq, flagACK|flagPSH, "\x81\x03a")
	f.seq += 3
	if s := f.next(); s.ack != f.seq {
		t.Fatalf("ack of a partial frame: %+v", s)
	}
	f.send(f.seq, flagACK|flagPSH, "bc")
	f.seq += 2
	f.next()
	waitStats(t, e, func(s Stats) bool { return s.Messages == 1 && s.Dups == 2 })

	go func() { _ = e.Close(t.Context(), -1) }()
	cl := f.next()
	if len(cl.payload) != 8 || cl.payload[0] != 0x88 || cl.payload[1] != 0x82 {
		t.Fatalf("our close frame: % x", cl.payload)
	}
	f.ack += uint32(len(cl.payload))
	f.send(f.seq, flagACK|flagPSH|flagFIN, "\x88\x02\x03\xe8")
	f.seq += 5
	fin := f.next()
	if fin.flags&flagFIN == 0 || fin.ack != f.seq || fin.seq != f.ack {
		t.Fatalf("our FIN: %+v", fin)
	}
	f.ack++
	f.send(f.seq, flagACK, "")
	st := waitStats(t, e, func(s Stats) bool { return s.Closed == 1 })
	if st.Unexpected != 0 || st.Live != 0 {
		t.Fatalf("after the close: %+v", st)
	}
	// The server's FIN sent again (our ACK lost) is acknowledged.
	f.send(f.seq-1, flagACK|flagFIN, "")
	if s := f.next(); s.ack != f.seq || s.flags != flagACK {
		t.Fatalf("answer to a repeated FIN: %+v", s)
	}
}

// TestStatesUnexpected: a close frame, FIN or RST from the server that
// we did not ask for each count as one unexpected close.
func TestStatesUnexpected(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   uint8
		payload string
		counter func(Stats) uint64
	}{
		{"close frame", flagACK | flagPSH, "\x88\x02\x03\xe9", func(s Stats) uint64 { return s.ServerCloses }},
		{"fin", flagACK | flagFIN, "", func(s Stats) uint64 { return s.ServerFINs }},
		{"rst", flagRST | flagACK, "", func(s Stats) uint64 { return s.Resets }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := handshake(t, 0)
			f.send(f.seq, tc.flags, tc.payload)
			st := waitStats(t, e, func(s Stats) bool { return s.Unexpected == 1 })
			if tc.counter(st) != 1 || st.Live != 0 || st.FirstError == "" {
				t.Fatalf("after a %s: %+v", tc.name, st)
			}
		})
	}
}

// TestRetransmitGivesUp: a SYN never answered is sent again with a
// doubling timeout, then the handshake fails.
func TestRetransmitGivesUp(t *testing.T) {
	p := newPipe()
	e, err := New(Config{Server: netip.MustParseAddrPort("10.77.0.1:30000"), Conns: 1, Rate: -1, RTO: 10 * time.Millisecond, MaxRetries: 3}, p)
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	defer func() { _ = e.Stop() }()
	if err := e.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	if st.Failed != 1 || st.Retransmits != 3 || !strings.Contains(st.FirstError, "given up") {
		t.Fatalf("stats %+v", st)
	}
	for range 4 {
		if s, err := parseSegment(<-p.out); err != nil || s.flags != flagSYN {
			t.Fatalf("want 4 SYNs: %+v %v", s, err)
		}
	}
	// A handshake given up after SYNs sends nothing more: the server has no state.
	select {
	case b := <-p.out:
		t.Fatalf("extra packet % x", b)
	default:
	}
}

// TestStatesCloseWait: a close we started that the server never answers
// (its close frame and FIN lost for good) ends after CloseWait with a
// reset, counted apart from the orderly closes.
func TestStatesCloseWait(t *testing.T) {
	e, f := handshake(t, 50*time.Millisecond)
	go func() { _ = e.Close(t.Context(), -1) }()
	cl := f.next()
	f.ack += uint32(len(cl.payload))
	f.send(f.seq, flagACK, "") // our close frame acknowledged, nothing more
	if rst := f.next(); rst.flags&flagRST == 0 {
		t.Fatalf("after CloseWait: %+v, want a RST", rst)
	}
	st := waitStats(t, e, func(s Stats) bool { return s.CloseTimeouts == 1 })
	if st.Closed != 0 || st.Unexpected != 0 || st.Live != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestStatesCloseReset: after our close and the server's FIN, a RST
// instead of the ACK of our FIN (the server's TIME_WAIT table is full)
// ends the client as a close reset, not as an unexpected close.
func TestStatesCloseReset(t *testing.T) {
	e, f := handshake(t, 0)
	go func() { _ = e.Close(t.Context(), -1) }()
	cl := f.next()
	f.ack += uint32(len(cl.payload))
	f.send(f.seq, flagACK|flagPSH|flagFIN, "\x88\x02\x03\xe8")
	f.seq += 5
	if fin := f.next(); fin.flags&flagFIN == 0 {
		t.Fatalf("our FIN: %+v", fin)
	}
	f.send(f.seq, flagRST, "")
	st := waitStats(t, e, func(s Stats) bool { return s.CloseResets == 1 })
	if st.Closed != 0 || st.Unexpected != 0 || st.Live != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOpenPause: while Config.Pause holds, no SYN leaves and the time is
// counted; once it lets go, the open goes on.
func TestOpenPause(t *testing.T) {
	p := newPipe()
	var mu sync.Mutex
	paused := true
	pause := func() bool { mu.Lock(); defer mu.Unlock(); return paused }
	e, err := New(Config{Server: netip.MustParseAddrPort("10.77.0.1:30000"), Conns: 2, Rate: -1, RTO: time.Hour, Seed: 9, Pause: pause}, p)
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(func() { _ = e.Stop() })
	go func() { _ = e.Open(t.Context()) }()
	select {
	case b := <-p.out:
		t.Fatalf("a packet left while paused: % x", b)
	case <-time.After(200 * time.Millisecond):
	}
	if st := e.Stats(); st.Started != 0 || st.PausedMs < 100 {
		t.Fatalf("after 200 ms paused: %d started, %d ms counted as paused", st.Started, st.PausedMs)
	}
	mu.Lock()
	paused = false
	mu.Unlock()
	f := &fakeServer{t: t, p: p}
	for range 2 {
		if s := f.next(); s.flags != flagSYN {
			t.Fatalf("after the pause: %+v, want a SYN", s)
		}
	}
	waitStats(t, e, func(s Stats) bool { return s.Started == 2 })
}

// TestScanWhileBehind: a segment due for retransmission is sent again
// unless a reader fell behind its device queue before it became due (its
// ACK may be queued there).
func TestScanWhileBehind(t *testing.T) {
	for _, tc := range []struct {
		name   string
		behind []uint32 // per link, ms clock; 0: keeping up
		want   uint64   // retransmissions
	}{
		{"keeping up", []uint32{0, 0}, 1},
		{"behind since before it was due", []uint32{0, 501}, 0},
		{"behind since after it was due", []uint32{5001, 0}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(Config{Server: netip.MustParseAddrPort("10.77.0.1:30000"), Conns: 1, RTO: time.Second}, newPipe(), newPipe())
			if err != nil {
				t.Fatal(err)
			}
			e.start = time.Now().Add(-10 * time.Second) // the clock reads ~10,000 ms
			c := &e.conns[0]
			c.state, c.sndUna, c.sndNxt, c.out, c.lastTx = stOpen, 100, 108, make([]byte, 8), 100 // due at 1,100 ms
			copy(e.behind, tc.behind)
			var o outBuf
			budget := 10
			e.scan(&o, 0, 1, &budget)
			if e.stats.Retransmits != tc.want || len(o.ends) != int(tc.want) {
				t.Fatalf("%d retransmissions, %d packets; want %d", e.stats.Retransmits, len(o.ends), tc.want)
			}
		})
	}
}
