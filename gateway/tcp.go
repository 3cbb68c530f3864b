package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/lesismal/nbio"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/framing"
)

// tcpEngine serves framed TCP clients with nbio's event loop.
type tcpEngine struct {
	l      *listener
	engine *nbio.Engine

	mu sync.Mutex
	ln net.Listener
}

func newTCPEngine(l *listener) *tcpEngine { return &tcpEngine{l: l} }

// tcpTransport is the socket and the framing decoder of a TCP connection.
type tcpTransport struct {
	nc  *nbio.Conn
	dec *framing.Decoder
}

func (t *tcpTransport) write(b []byte) error {
	_, err := t.nc.Write(b)
	return err
}

func (t *tcpTransport) close() { _ = t.nc.Close() }

func (e *tcpEngine) start() (net.Addr, error) {
	if _, err := e.l.newDecoder(); err != nil {
		return nil, err
	}
	e.engine = nbio.NewEngine(nbio.Config{
		Name:           "gatework-tcp-" + e.l.cfg.Name,
		Network:        "tcp",
		Addrs:          []string{e.l.cfg.Addr},
		NPoller:        runtime.GOMAXPROCS(0),
		ReadBufferSize: 16 << 10,
		Listen: func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err == nil {
				e.mu.Lock()
				e.ln = ln
				e.mu.Unlock()
			}
			return ln, err
		},
	})
	e.engine.OnOpen(e.onOpen)
	e.engine.OnData(e.onData)
	e.engine.OnClose(e.onClose)
	e.engine.OnWrittenSize(onWrittenSize)
	raceReadHook(e.engine)
	if err := e.engine.Start(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln == nil {
		return nil, errors.New("tcp engine started without a listener")
	}
	return e.ln.Addr(), nil
}

func (e *tcpEngine) onOpen(nc *nbio.Conn) {
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
	remote, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	// The session must be set before the first event can run an action
	// that writes: accept queues the connect event.
	t := &tcpTransport{nc: nc, dec: dec}
	c := s.newConn(e.l, t, remote)
	nc.SetSession(c)
	s.register(c, bus.Event{Type: bus.EventConnect})
	engineHandoff()
}

func (e *tcpEngine) onData(nc *nbio.Conn, data []byte) {
	c, _ := nc.Session().(*conn)
	if c == nil {
		return
	}
	c.sync()
	t := c.t.(*tcpTransport)
	s := e.l.s
	err := t.dec.Feed(data, func(msg []byte) error {
		s.received(c, msg, false)
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, framing.ErrTooLarge):
		s.close(c, ReasonMessageTooLarge, true)
	default:
		s.close(c, ReasonProtocolError, true)
	}
}

func (e *tcpEngine) onClose(nc *nbio.Conn, err error) {
	c, _ := nc.Session().(*conn)
	if c == nil {
		return
	}
	e.l.s.closed(c, ReasonClientClosed)
}

func (e *tcpEngine) stopAccepting() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln != nil {
		_ = e.ln.Close()
	}
}

func (e *tcpEngine) stop() {
	if e.engine != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.engine.Shutdown(ctx)
	}
}
