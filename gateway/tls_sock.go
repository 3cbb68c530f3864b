package gateway

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
)

// TLS socket states, guarded by tlsSock.mu.
const (
	tlsNew     uint8 = iota // the first record of the ClientHello is not complete
	tlsShaking              // handshake queued or running
	tlsOpen                 // handshake complete; the event loop reads
	tlsDead                 // closed, or the handshake failed
)

// tlsSock is one TLS connection: the Go standard library's server-side
// tls.Conn and the in-memory net.Conn under it. Reads of that net.Conn
// return the ciphertext the event loop fed it; writes go straight to the
// engine's outbound queue, which never blocks. During the handshake a read
// with nothing fed waits for the event loop (the handshake runs on a
// goroutine of its own); once it is complete, such a read fails with
// errTLSDrained, a temporary net.Error that crypto/tls returns from
// tls.Conn.Read without breaking the connection, keeping a partial record
// buffered. Keep it small: it is part of what every idle TLS connection
// costs (the tls.Conn keeps its own record buffers).
type tlsSock struct {
	*nbio.Conn

	tc *tls.Conn
	// proto holds the protocol's transport (a *wsTransport or a
	// *tcpTransport) once the handshake completed; see setTransport.
	proto atomic.Value
	// rmu serializes what the protocol sees of the socket (open, data,
	// closed) between the poller and the handshake goroutine.
	rmu sync.Mutex

	mu       sync.Mutex
	in       []byte     // ciphertext fed and not yet read; guarded by mu
	wake     *sync.Cond // on mu: the handshake waits for input; nil after it
	state    uint8      // guarded by mu
	borrowed bool       // in is the poller's buffer (read only); guarded by mu
}

// Read returns the ciphertext the event loop fed. It blocks while the
// handshake waits for the client and fails with errTLSDrained once the
// handshake is complete and nothing is left.
func (ts *tlsSock) Read(p []byte) (int, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for len(ts.in) == 0 {
		switch ts.state {
		case tlsDead:
			return 0, net.ErrClosed
		case tlsOpen:
			return 0, errTLSDrained
		}
		ts.wake.Wait()
	}
	n := copy(p, ts.in)
	ts.in = ts.in[n:]
	if len(ts.in) == 0 {
		ts.in = nil
	}
	return n, nil
}

// Write hands records to the engine and counts them in the connection's
// unsent bytes (the engine reports them as written). crypto/tls calls it
// with its output lock held.
func (ts *tlsSock) Write(b []byte) (int, error) {
	if s := socketOf(ts.Conn); s != nil && s.c != nil {
		s.c.unsent.Add(int64(len(b)))
	}
	return ts.Conn.Write(b)
}

// SetDeadline, SetReadDeadline and SetWriteDeadline do nothing: engine
// writes never block, and the handshake timeout closes the socket; the
// close_notify of tls.Conn.CloseWrite would otherwise arm the engine's
// timers.
func (ts *tlsSock) SetDeadline(time.Time) error      { return nil }
func (ts *tlsSock) SetReadDeadline(time.Time) error  { return nil }
func (ts *tlsSock) SetWriteDeadline(time.Time) error { return nil }

// feed adds data, which the caller (holding rmu, the handshake complete)
// reads before keep. With nothing left from before, data is read in place.
func (ts *tlsSock) feed(data []byte) {
	if len(data) == 0 {
		return
	}
	ts.mu.Lock()
	if len(ts.in) == 0 {
		ts.in, ts.borrowed = data, true
	} else {
		ts.in = append(ts.in, data...)
	}
	ts.mu.Unlock()
}

// keep copies the rest of a borrowed input (a partial record) before the
// poller reuses its buffer; an idle connection holds no input buffer.
func (ts *tlsSock) keep() {
	ts.mu.Lock()
	if ts.borrowed {
		ts.in = bytes.Clone(ts.in)
		ts.borrowed = false
	}
	ts.mu.Unlock()
}

// tlsDrained is the error of a read of a drained tlsSock: temporary, so
// that crypto/tls keeps the connection usable.
type tlsDrained struct{}

func (tlsDrained) Error() string   { return "gateway: tls input drained" }
func (tlsDrained) Timeout() bool   { return true }
func (tlsDrained) Temporary() bool { return true }

// errTLSDrained is returned by reads of a drained tlsSock.
var errTLSDrained net.Error = tlsDrained{}

// write encrypts b (whole frames) into records and hands them to the
// engine. The connection's unsent count, raised by len(b) by the caller,
// ends up raised by the record bytes instead (Write counts those). The
// handshake is complete: a socket has a transport, the only writer, once
// it is.
func (ts *tlsSock) write(s *sock, b []byte) error {
	_, err := ts.tc.Write(b)
	if c := s.c; c != nil {
		c.unsent.Add(-int64(len(b)))
	}
	return err
}

// closeNotify sends the TLS close_notify alert, before a FIN.
func (ts *tlsSock) closeNotify() { _ = ts.tc.CloseWrite() }
