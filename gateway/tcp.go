package gateway

import (
	"errors"
	"net"
	"net/netip"

	"github.com/lesismal/nbio"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/framing"
)

// tcpEngine serves framed TCP clients.
type tcpEngine struct {
	nbioEngine
}

func newTCPEngine(l *listener) *tcpEngine { return &tcpEngine{nbioEngine{l: l}} }

// tcpTransport is the socket and the framing decoder of a TCP connection.
type tcpTransport struct {
	sock
	dec *framing.Decoder
}

func (e *tcpEngine) start() (net.Addr, error) {
	if _, err := e.l.newDecoder(); err != nil {
		return nil, err
	}
	return e.nbioEngine.start(e)
}

func (e *tcpEngine) open(nc *nbio.Conn) {
	s := e.l.s
	if s.closing.Load() {
		_ = nc.Close()
		return
	}
	dec, err := e.l.newDecoder()
	if err != nil {
		_ = nc.Close()
		return
	}
	q, refused := s.admitSocket(nc)
	if refused != refusedNone {
		_ = nc.Close()
		return
	}
	remote, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	t := &tcpTransport{sock: newSock(nc, q), dec: dec}
	c := s.newConn(e.l, t, remote)
	t.c = c
	setTransport(nc, t)
	if e.l.cfg.DelayReceive {
		s.holdNew(c)
	}
	s.register(c, nil, bus.Event{Type: bus.EventConnect})
}

func (e *tcpEngine) data(nc *nbio.Conn, data []byte) {
	t, _ := transportOf(nc).(*tcpTransport)
	if t == nil {
		return
	}
	c := t.c
	c.sync()
	if c.closing() {
		return // lingering after a close: discard
	}
	if c.rx.Load() != 0 && e.l.s.holdInput(c, data) {
		return // paused or not confirmed yet
	}
	c.lastActiveMs.Store(nowMs()) // any inbound byte counts (idle timeout)
	e.input(t, data)
}

// input decodes the messages in data and hands them to the gateway.
func (e *tcpEngine) input(t *tcpTransport, data []byte) {
	c, s := t.c, e.l.s
	err := t.dec.Feed(data, func(msg []byte) error {
		s.received(c, msg, false)
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, framing.ErrTooLarge):
		s.close(c, ReasonMessageTooLarge, false)
	default:
		s.close(c, ReasonProtocolError, false)
	}
}

func (e *tcpEngine) closed(nc *nbio.Conn, err error) {
	t, _ := transportOf(nc).(*tcpTransport)
	if t == nil {
		return
	}
	e.l.s.closed(t.c, ReasonClientClosed)
}
