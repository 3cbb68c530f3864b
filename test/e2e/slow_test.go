package e2e

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

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
