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
// tls.Conn and the in-memory net.Conn under it, and once a TLS 1.3
// handshake is complete, the record layer that replaces the tls.Conn
// (tls13.go). Reads of that net.Conn
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

	// tc runs the handshake, and the records of a TLS 1.2 connection; rl
	// replaces it once a TLS 1.3 handshake is complete (tc is then nil).
	// Both are set by the handshake goroutine before the socket opens.
	tc *tls.Conn
	rl *tls13Records
	// kc collects the traffic secrets during the handshake; used by the
	// handshake goroutine only.
	kc *keyCapture
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
	// left is what Read has still to return of the record it started
	// (header included); 0 at a record boundary. Guarded by mu.
	left int
	// waiting is when the handshake goroutine started waiting for the
	// client's next bytes (unix ns), 0 while it is not waiting; the
	// sweeper closes a handshake that waits too long while others queue
	// (see handshakeStall). Guarded by mu.
	waiting int64
}

// Read returns the ciphertext the event loop fed, never past the end of
// a record: crypto/tls reads no further than the record it needs, so when
// the handshake ends, the records after the client's Finished are still
// here for the record layer. It blocks while the handshake waits for the
// client and fails with errTLSDrained once the handshake is complete and
// no record can be started or continued.
func (ts *tlsSock) Read(p []byte) (int, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for ts.left == 0 && len(ts.in) < recordHeaderLen || len(ts.in) == 0 {
		switch ts.state {
		case tlsDead:
			return 0, net.ErrClosed
		case tlsOpen:
			return 0, errTLSDrained
		}
		if ts.waiting == 0 {
			ts.waiting = time.Now().UnixNano()
		}
		ts.wake.Wait()
	}
	ts.waiting = 0
	if ts.left == 0 {
		ts.left = recordHeaderLen + (int(ts.in[3])<<8 | int(ts.in[4]))
	}
	n := copy(p[:min(len(p), ts.left)], ts.in)
	ts.left -= n
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
	if ts.kc != nil {
		ts.kc.wrote(b)
	}
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

// nextRecord takes the first whole record of the input, nil if there is
// none yet; an impossible header is an alertError.
func (ts *tlsSock) nextRecord() ([]byte, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.in) < recordHeaderLen {
		return nil, nil
	}
	n, err := checkHeader(ts.in)
	if err != nil || len(ts.in) < recordHeaderLen+n {
		return nil, err
	}
	rec := ts.in[:recordHeaderLen+n]
	ts.in = ts.in[recordHeaderLen+n:]
	if len(ts.in) == 0 {
		ts.in = nil
	}
	return rec, nil
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
	var err error
	if ts.rl != nil {
		err = ts.rl.write(ts, b)
	} else {
		_, err = ts.tc.Write(b)
	}
	if c := s.c; c != nil {
		c.unsent.Add(-int64(len(b)))
	}
	return err
}

// closeNotify sends the TLS close_notify alert, before a FIN.
func (ts *tlsSock) closeNotify() {
	if ts.rl != nil {
		ts.rl.sendAlert(ts, alertCloseNotify)
		return
	}
	_ = ts.tc.CloseWrite()
}
