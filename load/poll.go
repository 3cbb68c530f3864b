package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/lesismal/nbio"

	"github.com/gatework/gatework/internal/racehandoff"
)

// pollClient reads a child's connections on nbio event loops, one per core:
// each wake-up reads every ready socket once. A goroutine per connection
// pays a goroutine switch and a second, empty read per message, and at
// low rates cost the load tool 14.6 µs of CPU per fan-out delivery, the
// p50 latency it reported then being its own backlog. Echo's next message
// is written from the event loop as soon as the answer is parsed.
//
// The handshake is done before (dialWS, blocking); adopt then moves the
// socket into the engine.
type pollClient struct {
	engine *nbio.Engine
	cur    *atomic.Pointer[stats]
	timed  bool // fan-out and echo: messages carry a timestamp
	size   int  // echo message size

	stopping  atomic.Bool
	echoUntil atomic.Int64 // echo: replies before this (unix ns) send the next message
	inflight  atomic.Int64 // echo: messages sent and not answered yet
}

// emptyPong answers a ping without payload.
var emptyPong = appendMasked(nil, ws.OpPong, nil)

// pollConn is the client state of one adopted connection.
type pollConn struct {
	fr           frameReader
	waiting      atomic.Bool // echo: a message is out, unanswered
	serverClosed atomic.Bool // a close frame came first: not an error
}

// newPollClient starts the event loops; cur is where messages are counted.
func newPollClient(cur *atomic.Pointer[stats], timed bool, size int) (*pollClient, error) {
	p := &pollClient{cur: cur, timed: timed, size: size}
	p.engine = nbio.NewEngine(nbio.Config{
		Name:           "gwload",
		NPoller:        runtime.GOMAXPROCS(0),
		ReadBufferSize: 64 << 10,
	})
	p.engine.OnData(p.onData)
	p.engine.OnClose(p.onClose)
	racehandoff.Hook(p.engine)
	if err := p.engine.Start(); err != nil {
		return nil, fmt.Errorf("load: start client event loops: %w", err)
	}
	return p, nil
}

// adopt hands c's socket to the event loops, with any bytes the
// handshake read past the upgrade answer. c must not be used after.
func (p *pollClient) adopt(c *wsConn) (*nbio.Conn, error) {
	pc := &pollConn{}
	if n := c.br.Buffered(); n > 0 {
		// Frames that came with the upgrade answer: no poller will see
		// them, so handle them here, answering on the plain socket.
		early, _ := c.br.Peek(n)
		err := pc.fr.feed(bytes.Clone(early), func(op ws.OpCode, payload []byte) error {
			return p.frame(c.nc, pc, op, payload)
		})
		if err != nil {
			return nil, fmt.Errorf("load: frames after the handshake: %w", err)
		}
	}
	// The session must be in place before the socket joins a poller.
	nc, err := nbio.NBConn(c.nc)
	if err != nil {
		return nil, fmt.Errorf("load: adopt connection: %w", err)
	}
	nc.SetSession(pc)
	racehandoff.Release()
	if _, err := p.engine.AddConn(nc); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("load: adopt connection: %w", err)
	}
	return nc, nil
}

// stop closes every connection and the event loops.
func (p *pollClient) stop() {
	p.stopping.Store(true)
	p.engine.Stop()
}

func (p *pollClient) onData(c *nbio.Conn, data []byte) {
	pc, ok := c.Session().(*pollConn)
	if !ok {
		return
	}
	err := pc.fr.feed(data, func(op ws.OpCode, payload []byte) error {
		return p.frame(c, pc, op, payload)
	})
	if err != nil {
		if errors.Is(err, errClosed) {
			pc.serverClosed.Store(true)
		}
		_ = c.CloseWithError(err)
	}
}

// frame handles one frame of pc, answering on w.
func (p *pollClient) frame(w io.Writer, pc *pollConn, op ws.OpCode, payload []byte) error {
	switch op {
	case ws.OpClose:
		return errClosed
	case ws.OpPing:
		if len(payload) == 0 {
			// The gateway's heartbeat: one pre-encoded frame, no
			// allocation (nbio copies what it cannot write at once).
			_, err := w.Write(emptyPong)
			return err
		}
		_, err := w.Write(appendMasked(nil, ws.OpPong, payload))
		return err
	case ws.OpPong:
		return nil
	}
	s := p.cur.Load()
	s.count.Add(1)
	now := time.Now()
	if p.timed {
		if age, ok := stampAge(payload, now); ok {
			s.hist.Record(age)
		}
	}
	if !pc.waiting.Swap(false) {
		return nil
	}
	p.inflight.Add(-1)
	if now.UnixNano() < p.echoUntil.Load() {
		return p.sendEcho(w, pc)
	}
	return nil
}

// sendEcho writes one stamped message and marks it unanswered.
func (p *pollClient) sendEcho(w io.Writer, pc *pollConn) error {
	pc.waiting.Store(true)
	p.inflight.Add(1)
	if _, err := w.Write(appendMasked(make([]byte, 0, p.size+14), ws.OpText, stamped(p.size))); err != nil {
		if pc.waiting.Swap(false) {
			p.inflight.Add(-1)
		}
		return err
	}
	return nil
}

func (p *pollClient) onClose(c *nbio.Conn, _ error) {
	pc, ok := c.Session().(*pollConn)
	if !ok {
		return
	}
	if pc.waiting.Swap(false) {
		p.inflight.Add(-1)
	}
	// An idle client closed by the server (its idle timeout, a crash) is
	// an unexpected close too: the idle workload holds its connections.
	if !p.stopping.Load() && (!pc.serverClosed.Load() || !p.timed) {
		p.cur.Load().errors.Add(1)
	}
}

// runEcho has every connection send a stamped message and send the next
// one as soon as the answer came, until d has passed; then it waits (at
// most 5 s) for the answers still out and counts the missing ones as
// errors. s must be the current stats.
func (p *pollClient) runEcho(ctx context.Context, conns []*nbio.Conn, d time.Duration, s *stats) {
	deadline := time.Now().Add(d)
	p.echoUntil.Store(deadline.UnixNano())
	for _, c := range conns {
		pc, ok := c.Session().(*pollConn)
		if !ok {
			continue
		}
		if err := p.sendEcho(c, pc); err != nil {
			s.errors.Add(1)
		}
	}
	if sleepCtx(ctx, time.Until(deadline)) != nil {
		return
	}
	for end := time.Now().Add(5 * time.Second); p.inflight.Load() > 0 && time.Now().Before(end); {
		if sleepCtx(ctx, 5*time.Millisecond) != nil {
			return
		}
	}
	for _, c := range conns {
		if pc, ok := c.Session().(*pollConn); ok && pc.waiting.Swap(false) {
			p.inflight.Add(-1)
			s.errors.Add(1)
		}
	}
}
