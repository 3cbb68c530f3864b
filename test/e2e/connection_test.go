package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestWebSocketUpgradeRequest: OnWebSocketConnect sees the upgrade
// request (method, path, query, host, headers, cookies), and what it
// stores in the session is there for the client's first message.
func TestWebSocketUpgradeRequest(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	h := http.Header{}
	h.Set("X-Test", "header value")
	h.Set("Cookie", "a=1; c=cookie-value")
	c, _, err := cl.tryDialWS(t, "remember=1&x=%20y", h)
	if err != nil {
		t.Fatal(err)
	}
	w := c.who()
	want := api.Session{
		"method": "GET", "path": "/", "query": "remember=1&x=%20y", "host": cl.n.Addr("ws").String(),
		"header": "header value", "cookie": "cookie-value", "event": "websocket_connect",
	}
	if !jsonEq(w.Session, want) {
		t.Fatalf("OnWebSocketConnect stored %s, want %s", jsonOf(w.Session), jsonOf(want))
	}
}

// TestClientCloseHandshake: a WebSocket client that sends a close frame
// gets one back, and OnClose reports client_closed with the client's uid.
func TestClientCloseHandshake(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	obs := cl.dial(t, "ws")
	obs.send("/bind " + testapp.ObserverUID)
	obs.who()
	c := cl.dial(t, "ws")
	c.send("/bind leaving")
	c.who()
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(writeTimeout)); err != nil {
		t.Fatal(err)
	}
	f, msgs := c.expectClosed()
	if len(msgs) != 0 || f.code != websocket.CloseNormalClosure {
		t.Fatalf("after the client's close frame: %q then %v; want the server's close frame 1000", msgs, f)
	}
	checkCloseReport(t, obs, testapp.Closed{Client: c.id, Reason: "client_closed", UID: "leaving", Groups: []string{}, Session: api.Session{}})
}

// TestEventBacklog: with no worker, a client that sends more events than
// max_pending_events is closed with reason event_backlog (WebSocket close
// code 1013), counted; when a worker starts, its close event is still
// delivered.
func TestEventBacklog(t *testing.T) {
	const bound = 40
	cl := startCluster(t, clusterConfig{processes: true, maxPendingEvents: bound})
	bystander := cl.dial(t, "tcp")
	bystander.send("early")
	for _, proto := range []string{"ws", "tcp"} {
		c := cl.dial(t, proto)
		c.send("/bind flood-" + proto)
		for k := range bound + 10 {
			if err := c.write(fmt.Appendf(nil, "m%d", k), false); err != nil {
				break // the gateway may have closed already
			}
		}
		f, msgs := c.expectClosed()
		if len(msgs) != 0 || f.code != closeCodeWant(proto, 1013) {
			t.Fatalf("%s flood: %q then %v; want close code 1013", proto, msgs, f)
		}
	}
	if st := cl.n.Gateway().Stats(); st.Closes["event_backlog"] != 2 {
		t.Fatalf("stats %+v: want 2 event_backlog closes", st)
	}
	log := filepath.Join(t.TempDir(), "closes.jsonl")
	cl.startWorker(t, "-closelog", log)
	bystander.expect("early")
	waitFor(t, 15*time.Second, "the close events of both flooders", func() bool {
		n := 0
		for _, c := range readCloseLog(t, log) {
			if c.Reason == "event_backlog" {
				n++
			}
		}
		return n == 2
	})
	bystander.send("late")
	bystander.expect("late")
}

// TestCloseHandshakeServerClosesFirst: once the gateway has sent and
// received a close frame, it ends its side of the TCP connection at once
// (FIN; RFC 6455 §7.1.1: the server closes first), whoever started the
// handshake. A client that follows the RFC answers the close frame and
// waits for the server's FIN, as gorilla/websocket and browsers do; the
// gateway must not make it wait for a linger timeout.
func TestCloseHandshakeServerClosesFirst(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	ctx := ctxFor(t, 30*time.Second)
	for _, who := range []string{"server", "client"} {
		t.Run(who+" starts", func(t *testing.T) {
			known := []string{}
			if pg, err := cl.n.API().GetClientList(ctx, api.PageRequest{}); err == nil {
				known = pg.Items
			}
			s := dialStalled(t, cl, "ws")
			ws := s.ws
			id := onlyClient(t, cl, known...)
			if who == "server" {
				must(t, "CloseClient", cl.n.API().CloseClient(ctx, id, false))
			} else {
				if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(writeTimeout)); err != nil {
					t.Fatal(err)
				}
			}
			// gorilla answers the server's close frame itself (default
			// close handler) and returns the close error.
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _, err := ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 1000 {
				t.Fatalf("want the server's close frame 1000, got %v", err)
			}
			// Both close frames are exchanged: the server's FIN is due.
			got := time.Now()
			nc := ws.UnderlyingConn()
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := nc.Read(make([]byte, 64))
			waited := time.Since(got)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after the close handshake: read %d bytes, %v; want EOF", n, err)
			}
			t.Logf("the server's FIN came %v after the close handshake", waited)
			if waited > 600*time.Millisecond {
				t.Fatalf("the server's FIN came only %v after both close frames were exchanged (RFC 6455 §7.1.1)", waited)
			}
		})
	}
}

// stalled is a client that does not read until told to: the gateway's
// writes to it pile up in the kernel, then in the gateway's queue.
type stalled struct {
	ws *websocket.Conn
	tc net.Conn
}

func dialStalled(t *testing.T, cl *cluster, proto string) *stalled {
	t.Helper()
	s := &stalled{}
	if proto == "ws" {
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096}
		ws, resp, err := d.Dial(cl.wsURL(), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		s.ws = ws
		t.Cleanup(func() { _ = ws.Close() })
	} else {
		tc, err := net.DialTimeout("tcp", cl.tcpAddr(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s.tc = tc
		t.Cleanup(func() { _ = tc.Close() })
	}
	return s
}

// drain reads everything until the connection ends and returns the close
// code (WebSocket; 1006 without a close frame) and how many bytes of
// messages came.
func (s *stalled) drain(t *testing.T) (code int, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	if s.ws != nil {
		_ = s.ws.SetReadDeadline(deadline)
		for {
			_, m, err := s.ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return ce.Code, n
				}
				t.Fatalf("drain: %v", err)
			}
			n += len(m)
		}
	}
	_ = s.tc.SetReadDeadline(deadline)
	buf := make([]byte, 64<<10)
	for {
		k, err := s.tc.Read(buf)
		n += k
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("drain: %v", err)
			}
			return 0, n
		}
	}
}

// onlyClient returns the id of the one client that is not in known.
func onlyClient(t *testing.T, cl *cluster, known ...string) string {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	var id string
	waitFor(t, 10*time.Second, "the new client to be listed", func() bool {
		pg, err := cl.n.API().GetClientList(ctx, api.PageRequest{})
		if err != nil {
			return false
		}
		for _, it := range pg.Items {
			if !bytes.Contains([]byte(joinIDs(known)), []byte(it)) {
				id = it
				return true
			}
		}
		return false
	})
	return id
}

func joinIDs(ids []string) string {
	var b bytes.Buffer
	for _, id := range ids {
		b.WriteString(id + " ")
	}
	return b.String()
}

// TestSlowConsumer: a client that does not read while messages keep
// coming is disconnected once its queue exceeds max_queue_bytes (reason
// slow_consumer, counted); other clients are unaffected.
func TestSlowConsumer(t *testing.T) {
	for _, proto := range []string{"ws", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			cl := startCluster(t, clusterConfig{app: &testapp.Config{}, maxQueueBytes: 256 << 10})
			bystander := cl.dial(t, proto)
			bystander.who()
			s := dialStalled(t, cl, proto)
			id := onlyClient(t, cl, bystander.id)
			ctx := ctxFor(t, 50*time.Second)
			a := cl.n.API()
			msg := bytes.Repeat([]byte("s"), 64<<10)
			sent := 0
			for online := true; online; {
				for range 16 {
					must(t, "SendToClient", a.SendToClient(ctx, id, msg))
					sent += len(msg)
				}
				var err error
				if online, err = a.IsOnline(ctx, id); err != nil {
					t.Fatal(err)
				}
				if sent > 200<<20 {
					t.Fatalf("still online after %d MiB sent to a client that does not read", sent>>20)
				}
			}
			if st := cl.n.Gateway().Stats(); st.Closes["slow_consumer"] != 1 {
				t.Fatalf("stats %+v: want 1 slow_consumer close", st)
			}
			bystander.send("fine")
			bystander.expect("fine")
			code, n := s.drain(t)
			t.Logf("sent %d KiB, the client read %d KiB, then close code %d", sent>>10, n>>10, code)
			if want := closeCodeWant(proto, 1008); code != want {
				t.Fatalf("slow consumer disconnected with close code %d, want %d", code, want)
			}
		})
	}
}

// TestGracefulCloseTimeout: a graceful close of a client that does not
// read its queued data ends after CloseTimeout anyway.
func TestGracefulCloseTimeout(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}, maxQueueBytes: 64 << 20, closeTimeout: time.Second})
	s := dialStalled(t, cl, "ws")
	id := onlyClient(t, cl)
	ctx := ctxFor(t, 50*time.Second)
	a := cl.n.API()
	msg := bytes.Repeat([]byte("g"), 64<<10)
	for range 320 { // 20 MiB: more than the kernel's socket buffers hold
		must(t, "SendToClient", a.SendToClient(ctx, id, msg))
	}
	must(t, "CloseClient graceful", a.CloseClient(ctx, id, false))
	start := time.Now()
	waitFor(t, 10*time.Second, "the stalled client to be closed", func() bool {
		n, err := a.GetClientCount(ctx)
		return err == nil && n.Value == 0
	})
	d := time.Since(start)
	t.Logf("closed %v after CloseClient", d)
	if d > 5*time.Second {
		t.Errorf("graceful close of a stalled client took %v with CloseTimeout 1s", d)
	}
	_, n := s.drain(t)
	if n >= 320*len(msg) {
		t.Errorf("the stalled client got all %d bytes: the close did not cut the queue", n)
	}
}
