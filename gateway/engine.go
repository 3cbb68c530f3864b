package gateway

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/lesismal/nbio"

	"github.com/gatework/gatework/internal/racehandoff"
)

// nbioEngine runs one listener on nbio's epoll event loop: no goroutine per
// connection, one shared read buffer per poller, callbacks run inline on
// the poller goroutines. The protocol on top (WebSocket or framed TCP) is
// the listener's.
type nbioEngine struct {
	l      *listener
	engine *nbio.Engine

	mu        sync.Mutex
	ln        net.Listener
	running   bool // started and not yet stopped
	startedAt time.Time
	accepting sync.WaitGroup
	tls       *tlsLayer // nil for a plain listener
}

// sockHandler is what a listener's protocol does with its sockets.
type sockHandler interface {
	open(nc *nbio.Conn)
	data(nc *nbio.Conn, data []byte)
	closed(nc *nbio.Conn, err error)
}

func (e *nbioEngine) start(h sockHandler) (net.Addr, error) {
	if e.l.cfg.TLS != nil {
		tl, err := newTLSLayer(e, h)
		if err != nil {
			return nil, err
		}
		e.tls, h = tl, tl
	}
	// TCP keep-alive costs four setsockopt calls per accepted socket (of
	// about 27 syscalls a short connection costs here). A listener with an
	// idle timeout finds dead peers itself; one without keeps Go's
	// keep-alive (15 s) for that, unless tcp_keepalive says otherwise.
	lc := net.ListenConfig{}
	lc.KeepAlive, lc.KeepAliveConfig = e.l.cfg.keepAlive()
	// Go listens with Multipath TCP where the kernel has it (since Go
	// 1.24). Clients of a gateway speak plain TCP, and an MPTCP listener
	// passes every handshake through its subflow layer before falling
	// back to TCP, so the gateway listens with plain TCP.
	lc.SetMultipathTCP(false)
	if e.l.s.cfg.ReusePort {
		lc.Control = reusePortControl
	}
	ln, err := lc.Listen(context.Background(), "tcp", e.l.cfg.Addr)
	if err != nil {
		return nil, err
	}
	// The gateway accepts itself and hands sockets to the engine: nbio's
	// own acceptor spins when its listener is closed before the engine
	// stops, and a lame-duck drain closes the listener first.
	e.engine = nbio.NewEngine(nbio.Config{
		Name:           "gatework-" + e.l.cfg.Name,
		NPoller:        e.l.s.cfg.pollers(),
		ReadBufferSize: 16 << 10,
	})
	e.engine.OnOpen(func(nc *nbio.Conn) {
		h.open(nc)
		racehandoff.Release()
	})
	e.engine.OnData(h.data)
	e.engine.OnClose(func(nc *nbio.Conn, err error) {
		h.closed(nc, err)
		e.l.s.releaseSocket(socketOf(nc))
	})
	e.engine.OnWrittenSize(onWrittenSize)
	racehandoff.Hook(e.engine)
	if err := startEngine(e.engine); err != nil {
		_ = ln.Close()
		e.engine = nil // never started: nothing to stop
		return nil, err
	}
	e.mu.Lock()
	e.ln = ln
	e.running = true
	e.startedAt = time.Now()
	e.mu.Unlock()
	e.accepting.Add(1)
	go e.accept(ln)
	if e.tls != nil {
		go e.tls.run()
	}
	return ln.Addr(), nil
}

// accept hands every accepted socket to the engine until ln is closed.
// Errors such as running out of file descriptors are retried after a
// pause, so that the loop never spins.
func (e *nbioEngine) accept(ln net.Listener) {
	defer e.accepting.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.l.s.log.Warn("accept failed; retrying", "listener", e.l.cfg.Name, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		// Adopted first, so that the engine's dup of the socket is
		// close-on-exec (cloexec.go); AddConn closes it on failure.
		nc, err := adoptSocket(c)
		if err != nil {
			_ = c.Close() // out of descriptors: as for a refused socket
			continue
		}
		_, _ = e.engine.AddConn(nc)
	}
}

func (e *nbioEngine) stopAccepting() {
	e.mu.Lock()
	ln := e.ln
	e.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	e.accepting.Wait()
}

// stop closes every socket still open and waits for the pollers to exit.
// It is idempotent and does nothing for an engine that never started.
func (e *nbioEngine) stop() {
	e.stopAccepting()
	e.mu.Lock()
	running := e.running
	e.running = false
	startedAt := e.startedAt
	e.mu.Unlock()
	if !running {
		return
	}
	if e.tls != nil {
		e.tls.stop()
	}
	// nbio's poller goroutine clears its shutdown flag when its loop
	// begins, so a Stop that comes before that is lost and the loop spins
	// forever. Give a just-started engine's pollers time to enter their
	// loops (microseconds normally; generous for loaded machines).
	if wait := minEngineLife - time.Since(startedAt); wait > 0 {
		time.Sleep(wait)
	}
	e.engine.Stop()
	if e.tls != nil {
		e.tls.workers.Wait() // every socket closed: the handshakes ended
	}
}

// minEngineLife is how long an engine runs before it may be stopped; see
// nbioEngine.stop.
const minEngineLife = 250 * time.Millisecond

// sock is the part of a transport every protocol shares: the socket and
// the connection it carries (nil until a WebSocket handshake completes).
type sock struct {
	nc  *nbio.Conn
	c   *conn
	q   *quota   // what the socket holds of the limits; nil without limits
	tls *tlsSock // the TLS record layer; nil on a plain listener
}

// newSock returns the socket of a protocol's new transport, taking over
// the TLS record layer of a socket whose TLS handshake just completed.
func newSock(nc *nbio.Conn, q *quota) sock {
	ts, _ := nc.Session().(*tlsSock)
	return sock{nc: nc, q: q, tls: ts}
}

func (s *sock) write(b []byte) error {
	if s.tls != nil {
		return s.tls.write(s, b)
	}
	_, err := s.nc.Write(b)
	return err
}

func (s *sock) close() { _ = s.nc.Close() }

// closeWrite sends FIN but keeps reading, so that a peer still sending
// does not get a reset that would destroy the close frame just written.
//
// The shutdown runs under the engine's lock of the socket and only while
// it is open: the engine marks a socket closed under that lock before it
// closes the descriptor, and once closed the descriptor number can belong
// to a newly accepted client (a peer's FIN racing the linger used to cut
// a stranger's connection right after its 101).
func (s *sock) closeWrite() {
	if s.tls != nil {
		s.tls.closeNotify()
	}
	rc, err := s.nc.SyscallConn()
	if err != nil {
		_ = s.nc.Close()
		return
	}
	s.nc.Lock()
	defer s.nc.Unlock()
	if closed, _ := s.nc.IsClosed(); closed {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
}

// setTransport makes t the protocol's transport of nc. The session of a
// TLS listener's socket stays its *tlsSock, which carries t.
func setTransport(nc *nbio.Conn, t any) {
	if ts, ok := nc.Session().(*tlsSock); ok {
		ts.proto.Store(t)
		return
	}
	nc.SetSession(t)
}

// transportOf returns the protocol's transport of nc, nil before there
// is one.
func transportOf(nc *nbio.Conn) any {
	x := nc.Session()
	if ts, ok := x.(*tlsSock); ok {
		return ts.proto.Load()
	}
	return x
}

// socketOf returns the shared part of a socket's transport.
func socketOf(nc *nbio.Conn) *sock { return sockOf(transportOf(nc)) }

// sockOf returns the shared part of transport t, nil for a transport
// without one (UDP).
func sockOf(t any) *sock {
	switch t := t.(type) {
	case *tcpTransport:
		return &t.sock
	case *wsTransport:
		return &t.sock
	}
	return nil
}

// onWrittenSize keeps each connection's unsent byte count: the engine calls
// it, under its own lock, for every chunk it hands to the kernel.
func onWrittenSize(nc *nbio.Conn, _ []byte, n int) {
	if s := socketOf(nc); s != nil && s.c != nil {
		if s.c.unsent.Add(-int64(n)) == 0 && s.c.l.cfg.QueuePolicy == QueueDropOldest {
			s.c.sh.signal() // release the frames held back (queue.go)
		}
	}
}
