package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/test/e2e/testapp"
)

// Timeouts of the test clients. The machine is slow and shared: they are
// generous, and only ever reached when something is broken.
const (
	recvTimeout  = 15 * time.Second // one expected message
	readDeadline = 2 * time.Minute  // every socket read; the reader loops
	writeTimeout = 10 * time.Second // every socket write
)

// frameKind says what a client's reader saw.
type frameKind int

const (
	kindMessage frameKind = iota
	kindPong              // a WebSocket pong
	kindClosed            // the connection ended; nothing follows
)

// frame is one thing a client received.
type frame struct {
	kind   frameKind
	data   []byte
	binary bool // a WebSocket binary frame
	// For kindClosed: the WebSocket close code the server sent
	// (websocket.CloseAbnormalClosure, 1006, when the socket closed without
	// a close frame; 0 for TCP), its reason, and the read error.
	code int
	text string
	err  error
}

func (f frame) String() string {
	switch f.kind {
	case kindPong:
		return fmt.Sprintf("pong %q", f.data)
	case kindClosed:
		return fmt.Sprintf("closed code=%d reason=%q err=%v", f.code, f.text, f.err)
	}
	d := string(f.data)
	if len(d) > 80 {
		d = d[:80] + "…"
	}
	return fmt.Sprintf("message binary=%v %q", f.binary, d)
}

// client is a WebSocket or TCP (line framing) client. A reader goroutine
// puts everything it receives in order into in, so that a test can wait
// for a message with a timeout without breaking the connection.
type client struct {
	t     *testing.T
	proto string // "ws" or "tcp"
	ws    *websocket.Conn
	tc    net.Conn
	id    string // filled by who

	in   chan frame
	stop chan struct{}
	done chan struct{}
	wmu  sync.Mutex
	once sync.Once
}

func newClient(t *testing.T, proto string) *client {
	return &client{
		t: t, proto: proto,
		in:   make(chan frame, 8192),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// dial connects a client of protocol proto ("ws" or "tcp") and closes it at
// the end of the test.
func (c *cluster) dial(t *testing.T, proto string) *client {
	t.Helper()
	if proto == "tcp" {
		return c.dialTCP(t)
	}
	return c.dialWS(t, "")
}

// dialWS opens a WebSocket with the given raw query.
func (c *cluster) dialWS(t *testing.T, query string) *client {
	t.Helper()
	cl, _, err := c.tryDialWS(t, query, nil)
	if err != nil {
		t.Fatalf("dial ws: %v", err)
	}
	return cl
}

func (c *cluster) tryDialWS(t *testing.T, query string, header http.Header) (*client, *http.Response, error) {
	u := c.wsURL()
	if query != "" {
		u += "?" + query
	}
	return dialWSURL(t, u, header)
}

// dialWSURL opens a WebSocket to any URL; the client is closed at the end
// of the test.
func dialWSURL(t *testing.T, u string, header http.Header) (*client, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial(u, header)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, resp, err
	}
	cl := newClient(t, "ws")
	cl.ws = ws
	ws.SetPongHandler(func(s string) error {
		cl.push(frame{kind: kindPong, data: []byte(s)})
		return nil
	})
	go cl.readWS()
	t.Cleanup(cl.close)
	return cl, resp, nil
}

// dialTCP opens a TCP connection to the line-framed listener.
func (c *cluster) dialTCP(t *testing.T) *client {
	t.Helper()
	cl, err := c.tryDialTCP(t)
	if err != nil {
		t.Fatalf("dial tcp: %v", err)
	}
	return cl
}

func (c *cluster) tryDialTCP(t *testing.T) (*client, error) {
	tc, err := net.DialTimeout("tcp", c.tcpAddr(), 10*time.Second)
	if err != nil {
		return nil, err
	}
	cl := newClient(t, "tcp")
	cl.tc = tc
	go cl.readTCP()
	t.Cleanup(cl.close)
	return cl, nil
}

func (cl *client) push(f frame) {
	select {
	case cl.in <- f:
	case <-cl.stop:
	}
}

func (cl *client) readWS() {
	defer close(cl.done)
	for {
		_ = cl.ws.SetReadDeadline(time.Now().Add(readDeadline))
		mt, data, err := cl.ws.ReadMessage()
		if err != nil {
			f := frame{kind: kindClosed, err: err, code: websocket.CloseAbnormalClosure}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				f.code, f.text = ce.Code, ce.Text
			}
			// As applications do: the connection is over, release it
			// (the gateway lingers until the client's FIN otherwise).
			_ = cl.ws.Close()
			cl.push(f)
			return
		}
		cl.push(frame{data: data, binary: mt == websocket.BinaryMessage})
	}
}

func (cl *client) readTCP() {
	defer close(cl.done)
	br := bufio.NewReaderSize(cl.tc, 64<<10)
	for {
		_ = cl.tc.SetReadDeadline(time.Now().Add(readDeadline))
		line, err := br.ReadBytes('\n')
		if err != nil {
			_ = cl.tc.Close()
			cl.push(frame{kind: kindClosed, err: err})
			return
		}
		cl.push(frame{data: line[:len(line)-1]})
	}
}

// close closes the socket and waits for the reader; idempotent.
func (cl *client) close() {
	cl.once.Do(func() {
		close(cl.stop)
		if cl.ws != nil {
			_ = cl.ws.Close()
		} else {
			_ = cl.tc.Close()
		}
		<-cl.done
	})
}

// localPort is the client's own port, the gateway's remote port.
func (cl *client) localPort() int {
	if cl.ws != nil {
		return cl.ws.LocalAddr().(*net.TCPAddr).Port
	}
	return cl.tc.LocalAddr().(*net.TCPAddr).Port
}

// write sends one message: on WebSocket a text frame when data is valid
// UTF-8 and binary is false, else a binary frame; on TCP data and "\n".
func (cl *client) write(data []byte, binary bool) error {
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	if cl.ws != nil {
		_ = cl.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
		mt := websocket.TextMessage
		if binary || !utf8.Valid(data) {
			mt = websocket.BinaryMessage
		}
		return cl.ws.WriteMessage(mt, data)
	}
	_ = cl.tc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := cl.tc.Write(append(append(make([]byte, 0, len(data)+1), data...), '\n'))
	return err
}

// writeFrame sends a WebSocket data frame of type mt as is (a text frame
// may hold invalid UTF-8).
func (cl *client) writeFrame(mt int, data []byte) error {
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	_ = cl.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return cl.ws.WriteMessage(mt, data)
}

// send writes a message and fails the test on error. Test goroutine only.
func (cl *client) send(s string) {
	cl.t.Helper()
	if err := cl.write([]byte(s), false); err != nil {
		cl.t.Fatalf("%s client %s: send %q: %v", cl.proto, cl.id, s, err)
	}
}

// recv returns the next frame, or an error after timeout.
func (cl *client) recv(timeout time.Duration) (frame, error) {
	select {
	case f := <-cl.in:
		return f, nil
	case <-time.After(timeout):
		return frame{}, fmt.Errorf("%s client %s: nothing received within %v", cl.proto, cl.id, timeout)
	}
}

// next returns the next message; the test fails on timeout or close.
func (cl *client) next() frame {
	cl.t.Helper()
	f, err := cl.recv(recvTimeout)
	if err != nil {
		cl.t.Fatal(err)
	}
	if f.kind != kindMessage {
		cl.t.Fatalf("%s client %s: want a message, got %v", cl.proto, cl.id, f)
	}
	return f
}

// expect fails the test unless the next message is want.
func (cl *client) expect(want string) {
	cl.t.Helper()
	if f := cl.next(); string(f.data) != want {
		cl.t.Fatalf("%s client %s: got %v, want %q", cl.proto, cl.id, f, want)
	}
}

// expectClosed reads until the connection ends and returns the close frame
// and the messages received before it.
func (cl *client) expectClosed() (frame, []string) {
	cl.t.Helper()
	var msgs []string
	for {
		f, err := cl.recv(recvTimeout)
		if err != nil {
			cl.t.Fatalf("%v (waiting for close; got %q before)", err, msgs)
		}
		switch f.kind {
		case kindClosed:
			return f, msgs
		case kindMessage:
			msgs = append(msgs, string(f.data))
		}
	}
}

// who asks the handler for the client's state (and learns the client id).
func (cl *client) who() testapp.Who {
	cl.t.Helper()
	cl.send("/who")
	f := cl.next()
	var w testapp.Who
	if err := json.Unmarshal(f.data, &w); err != nil {
		cl.t.Fatalf("%s client: /who answered %v: %v", cl.proto, f, err)
	}
	if w.Session == nil {
		w.Session = map[string]any{}
	}
	cl.id = w.Client
	return w
}

// until reads messages up to the one equal to marker and returns those
// before it.
func (cl *client) until(marker string) []string {
	cl.t.Helper()
	var got []string
	for {
		f := cl.next()
		if string(f.data) == marker {
			return got
		}
		got = append(got, string(f.data))
	}
}

// dialMany connects n clients, alternating ws and tcp when proto is "mix",
// and learns their ids.
func (c *cluster) dialMany(t *testing.T, proto string, n int) []*client {
	t.Helper()
	out := make([]*client, n)
	for i := range out {
		p := proto
		if proto == "mix" {
			p = []string{"ws", "tcp"}[i%2]
		}
		out[i] = c.dial(t, p)
		out[i].who()
	}
	return out
}

// idsOf returns the clients' ids.
func idsOf(cls ...*client) []string {
	out := make([]string, len(cls))
	for i, cl := range cls {
		out[i] = cl.id
	}
	return out
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
