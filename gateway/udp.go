package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/framing"
)

// UDP limits.
const (
	// MaxDatagram is the largest datagram the gateway sends: the largest
	// UDP payload over IPv4 (65,535 - 8 - 20). A message whose datagram
	// (framing included) would be larger is refused, never truncated.
	MaxDatagram = 65507
	// DefaultMaxPeers is ListenerConfig.MaxPeers's default.
	DefaultMaxPeers = 65536
	// udpRecordHeader is the size of the length prefix of each datagram
	// in a UDP connection's queued bytes (see udpEngine).
	udpRecordHeader = 2
)

// errUDPCounted tells the shard's flusher that a UDP write succeeded and
// counted its bytes itself (the datagrams, without the queue's record
// headers).
var errUDPCounted = errors.New("gateway: udp datagrams counted")

// udpEngine serves a UDP listener: one goroutine reads the socket, and each
// remote address (peer) is a connection of its own, registered at its first
// datagram and closed by the idle timeout (or any other close). Each
// datagram is one message. Queued output is a sequence of records, each a
// 2-byte big-endian length and one datagram, which the flusher's write
// sends as one datagram each.
//
// The socket is opened by Go (close-on-exec) and never handed to nbio.
type udpEngine struct {
	l       *listener
	pc      *net.UDPConn
	maxIn   int // the largest datagram accepted: max_message plus the framing header
	dec     *framing.Decoder
	stopped atomic.Bool // stopAccepting: new peers are ignored
	done    chan struct{}

	mu    sync.Mutex // guards peers
	peers map[netip.AddrPort]*udpTransport
}

func newUDPEngine(l *listener) *udpEngine {
	return &udpEngine{l: l, peers: make(map[netip.AddrPort]*udpTransport)}
}

// udpTransport is one UDP peer: the transport of its connection.
type udpTransport struct {
	e      *udpEngine
	addr   netip.AddrPort
	c      *conn
	q      *quota // what the peer holds of the limits; nil without limits
	closed atomic.Bool
}

func (e *udpEngine) start() (net.Addr, error) {
	fc := e.l.cfg.Framing
	e.maxIn = e.l.cfg.MaxMessage
	if fc.Kind == framing.KindLength {
		dec, err := e.l.newDecoder()
		if err != nil {
			return nil, err
		}
		e.dec = dec
		if !fc.DeliverHeader {
			e.maxIn += fc.HeaderSize
		}
	}
	lc := net.ListenConfig{}
	if e.l.s.cfg.ReusePort {
		lc.Control = reusePortControl
	}
	p, err := lc.ListenPacket(context.Background(), "udp", e.l.cfg.Addr)
	if err != nil {
		return nil, err
	}
	pc := p.(*net.UDPConn)
	// Room for bursts of datagrams while the read loop hands one to the
	// workers; the kernel caps it at net.core.rmem_max.
	_ = pc.SetReadBuffer(4 << 20)
	_ = pc.SetWriteBuffer(4 << 20)
	e.pc = pc
	e.done = make(chan struct{})
	go e.read()
	return pc.LocalAddr(), nil
}

// read receives datagrams until the socket is closed. A datagram one byte
// larger than the largest accepted one tells that it was too large (the
// kernel truncates what does not fit).
func (e *udpEngine) read() {
	defer close(e.done)
	buf := make([]byte, min(e.maxIn, maxDatagramIn)+1)
	for {
		n, from, err := e.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Errors that concern one datagram or peer (such as ICMP
			// errors on some systems) do not stop the listener; the pause
			// keeps a persistent one from spinning.
			e.l.s.log.Debug("udp read failed", "listener", e.l.cfg.Name, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		e.datagram(from, buf[:n])
	}
}

// maxDatagramIn is the largest datagram any UDP socket can receive (IPv6
// without jumbograms: 65,535 - 8).
const maxDatagramIn = 65527

// datagram handles one datagram from from.
func (e *udpEngine) datagram(from netip.AddrPort, d []byte) {
	s := e.l.s
	e.mu.Lock()
	t := e.peers[from]
	e.mu.Unlock()
	if t == nil {
		msg, ok := e.message(d)
		if !ok {
			s.stats.refused[refusedDatagram].Add(1)
			return
		}
		if t = e.admit(from); t == nil {
			return
		}
		s.received(t.c, msg, false)
		return
	}
	c := t.c
	if c.closing() {
		return // closing: its next datagram after the close makes a new client
	}
	c.lastActiveMs.Store(nowMs())
	if len(d) > e.maxIn {
		s.close(c, ReasonMessageTooLarge, false)
		return
	}
	msg, ok := e.message(d)
	if !ok {
		s.close(c, ReasonProtocolError, false)
		return
	}
	s.received(c, msg, false)
}

// message returns the message in datagram d: d itself without framing, or
// the body of the one length-prefixed frame d must hold exactly.
func (e *udpEngine) message(d []byte) ([]byte, bool) {
	if len(d) > e.maxIn {
		return nil, false
	}
	if e.dec == nil {
		return d, true
	}
	var msg []byte
	frames := 0
	err := e.dec.Feed(d, func(m []byte) error {
		msg = m
		frames++
		return nil
	})
	ok := err == nil && frames == 1 && e.dec.Buffered() == 0
	e.dec.Reset()
	return msg, ok
}

// admit registers a new peer, within the listener's peer table and the
// gateway's limits, or returns nil.
func (e *udpEngine) admit(from netip.AddrPort) *udpTransport {
	s := e.l.s
	if s.closing.Load() || e.stopped.Load() {
		return nil
	}
	e.mu.Lock()
	full := len(e.peers) >= e.l.cfg.MaxPeers
	e.mu.Unlock()
	if full {
		s.stats.refused[refusedPeers].Add(1)
		return nil
	}
	q, refused := s.admitAddr(from.Addr().Unmap())
	if refused != refusedNone {
		return nil
	}
	t := &udpTransport{e: e, addr: from, q: q}
	c := s.newConn(e.l, t, from)
	t.c = c
	e.mu.Lock()
	e.peers[from] = t
	e.mu.Unlock()
	s.register(c, nil, bus.Event{Type: bus.EventConnect})
	return t
}

// stopAccepting ignores datagrams from new peers; known peers are still
// served, so that a drain can still deliver to them.
func (e *udpEngine) stopAccepting() { e.stopped.Store(true) }

// stop closes the socket, waits for the read loop and closes every peer
// left.
func (e *udpEngine) stop() {
	e.stopped.Store(true)
	if e.pc == nil {
		return
	}
	_ = e.pc.Close()
	<-e.done
	e.mu.Lock()
	left := make([]*udpTransport, 0, len(e.peers))
	for _, t := range e.peers {
		left = append(left, t)
	}
	e.mu.Unlock()
	for _, t := range left {
		t.close()
	}
}

// write sends each record of b as one datagram. It counts the datagrams'
// bytes itself and returns errUDPCounted when all went out.
func (t *udpTransport) write(b []byte) error {
	c := t.c
	total := len(b)
	var sent, failed int
	var firstErr error
	for len(b) >= udpRecordHeader {
		n := int(binary.BigEndian.Uint16(b))
		d := b[udpRecordHeader : udpRecordHeader+n]
		b = b[udpRecordHeader+n:]
		if _, err := t.e.pc.WriteToUDPAddrPort(d, t.addr); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		sent += n
	}
	c.bytesOut.Add(uint64(sent))
	c.sh.bytesOut.Add(uint64(sent))
	if c.unsent.Add(-int64(total)) == 0 && c.l.cfg.QueuePolicy == QueueDropOldest {
		c.sh.signal()
	}
	if failed > 0 {
		// A datagram the kernel refused (no route, buffer full): UDP is
		// unreliable anyway; the peer stays until its idle timeout.
		t.e.l.s.log.Debug("datagrams not sent", "listener", t.e.l.cfg.Name, "remote", t.addr.String(), "count", failed, "err", firstErr)
	}
	return errUDPCounted
}

// close forgets the peer and reports its connection closed, once.
func (t *udpTransport) close() {
	if !t.closed.CompareAndSwap(false, true) {
		return
	}
	e := t.e
	e.mu.Lock()
	if e.peers[t.addr] == t {
		delete(e.peers, t.addr)
	}
	e.mu.Unlock()
	e.l.s.closed(t.c, ReasonClientClosed)
	e.l.s.releaseQuota(t.q)
}

// closeWrite closes at once: a UDP peer has nothing to half-close, and its
// queued datagrams were sent before this is called.
func (t *udpTransport) closeWrite() { t.close() }

// udpFrame returns msg as one queued record: the 2-byte length and the
// datagram (msg framed per the listener's framing).
func (l *listener) udpFrame(msg []byte) ([]byte, error) {
	dst := make([]byte, udpRecordHeader, udpRecordHeader+len(msg)+8)
	var err error
	if l.cfg.Framing.Kind == framing.KindLength {
		dst, err = l.cfg.Framing.AppendFrame(dst, msg)
		if err != nil {
			return nil, err
		}
	} else {
		if len(msg) > l.cfg.MaxMessage {
			return nil, fmt.Errorf("%w: %d bytes, max_message is %d", framing.ErrTooLarge, len(msg), l.cfg.MaxMessage)
		}
		dst = append(dst, msg...)
	}
	n := len(dst) - udpRecordHeader
	if n > MaxDatagram {
		return nil, fmt.Errorf("%w: %d bytes, over the UDP maximum of %d", ErrDatagramTooLarge, n, MaxDatagram)
	}
	binary.BigEndian.PutUint16(dst, uint16(n))
	return dst, nil
}

// ErrDatagramTooLarge is the error (in a send's reply: code
// invalid_request) of a message that does not fit in one datagram.
var ErrDatagramTooLarge = errors.New("gateway: message too large for one datagram")
