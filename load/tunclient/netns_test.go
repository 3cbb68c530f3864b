package tunclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/netnstest"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

// setupTUN brings lo up and opens TUN device gwt0 with address
// 10.77.0.1/8, in the test's own namespace (see netnstest.Reexec).
func setupTUN(t *testing.T) *Device {
	t.Helper()
	devs, err := OpenTUN("gwt0", 1)
	if err != nil {
		t.Skipf("the kernel refuses a TUN device: %v", err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", "10.77.0.1/8", "dev", "gwt0"},
		{"link", "set", "gwt0", "up", "txqueuelen", "10000"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			_ = devs[0].Close()
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	return devs[0]
}

// closeReasons collects the close reasons the worker saw.
type closeReasons struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *closeReasons) add(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r]++
}

func (c *closeReasons) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// startGateway starts a gatework node with its ws listener on
// 10.77.0.1 and short heartbeats, and returns it with the connect count
// and the close reasons its worker saw.
func startGateway(t *testing.T, ping, idle time.Duration) (*node.Node, *atomic.Int64, *closeReasons) {
	t.Helper()
	var connects atomic.Int64
	reasons := &closeReasons{n: map[string]int{}}
	h := worker.Handlers{
		OnConnect: func(*worker.Context) { connects.Add(1) },
		OnClose:   func(c *worker.Context) { reasons.add(c.CloseReason()) },
	}
	n, err := node.Start(context.Background(), node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "10.77.0.1:0",
			PingInterval: ping, IdleTimeout: idle}}},
		HTTP:   node.HTTPConfig{Addr: "127.0.0.1:0"},
		Worker: node.WorkerConfig{Handlers: &h},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Shutdown(context.Background()) })
	return n, &connects, reasons
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGatewayOverTUN opens clients over a TUN device to a real gatework
// gateway: they open, answer the pings of a short ping interval (so the
// idle timeout never closes them), receive a message the server sends,
// and close in order, which the gateway sees as normal closes.
func TestGatewayOverTUN(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	for _, noRing := range []bool{false, true} {
		t.Run(map[bool]string{false: "io_uring", true: "read_write"}[noRing], func(t *testing.T) {
			testGatewayOverTUN(t, noRing)
		})
	}
}

// testGatewayOverTUN runs TestGatewayOverTUN with the queue's packets
// through an io_uring (noRing false: the test fails unless the ring is
// used, where the kernel has io_uring) and TCP timestamps, or a system
// call each and no timestamps.
func testGatewayOverTUN(t *testing.T, noRing bool) {
	dev := setupTUN(t)
	const conns = 300
	n, connects, reasons := startGateway(t, 200*time.Millisecond, 2*time.Second)
	srv := netip.MustParseAddrPort(n.Addr("ws").String())
	// The read/write path runs without TCP timestamps, the ring with.
	e := openEngine(t, Config{Server: srv, Conns: conns, Rate: 3000, RTO: 200 * time.Millisecond, NoRing: noRing, NoTimestamps: noRing}, dev)
	if r, err := newRing(dev.fd); err == nil {
		r.release()
		dev.mu.Lock()
		used := dev.ring != nil
		dev.mu.Unlock()
		if used == noRing {
			t.Fatalf("NoRing %v, and the reader's ring in use: %v", noRing, used)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if st := e.Stats(); st.Opened != conns || st.Failed != 0 || st.Live != conns {
		t.Fatalf("after Open: %+v", st)
	}
	if want := map[bool]uint64{false: conns, true: 0}[noRing]; e.Stats().Timestamps != want {
		t.Fatalf("%d handshakes with TCP timestamps, want %d", e.Stats().Timestamps, want)
	}
	waitFor(t, 5*time.Second, "every OnConnect", func() bool { return connects.Load() == conns })

	// 2.6 s is more than an idle timeout: only the pongs keep them open
	// (the timeout leaves room for a loaded machine running -race).
	time.Sleep(2600 * time.Millisecond)
	st := e.Stats()
	if st.Unexpected != 0 || st.Live != conns {
		t.Fatalf("after the hold: %d unexpected closes, %d live (%s)", st.Unexpected, st.Live, st.FirstError)
	}
	if st.Pings < 2*conns {
		t.Fatalf("%d pings for %d clients in 2.6 s at a 200 ms interval", st.Pings, conns)
	}
	if got := reasons.get(); len(got) != 0 {
		t.Fatalf("the gateway closed clients: %v", got)
	}

	if err := n.API().SendToAll(ctx, []byte("hello over tun")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the message at every client", func() bool { return e.Stats().Messages == conns })

	if err := e.Close(ctx, 5000); err != nil {
		t.Fatalf("Close: %v (%+v)", err, e.Stats())
	}
	st = e.Stats()
	if st.Closed != conns || st.Unexpected != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	waitFor(t, 5*time.Second, "every OnClose", func() bool { return reasons.get()["client_closed"] == conns })
	if got := reasons.get(); len(got) != 1 {
		t.Fatalf("close reasons %v, want only client_closed", got)
	}
}

// lossyLink drops the first copy of chosen packets in each direction.
type lossyLink struct {
	Link
	mu      sync.Mutex
	seen    map[string]bool
	dropOut func(s segment) bool // writes
	dropIn  func(s segment) bool // reads
	dropped atomic.Int64
}

// first reports whether this is the first time key was seen.
func (l *lossyLink) first(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[key] {
		return false
	}
	l.seen[key] = true
	return true
}

func (l *lossyLink) WritePacket(p []byte) error {
	if s, err := parseSegment(p); err == nil && l.dropOut(s) && l.first("out"+string(p[12:20])+string(p[20:24])) {
		l.dropped.Add(1)
		return nil
	}
	return l.Link.WritePacket(p)
}

func (l *lossyLink) ReadPacket(b []byte) (int, error) {
	for {
		n, err := l.Link.ReadPacket(b)
		if err != nil {
			return n, err
		}
		if s, err := parseSegment(b[:n]); err == nil && l.dropIn(s) && l.first("in"+string(b[12:20])+string(b[20:24])) {
			l.dropped.Add(1)
			continue
		}
		return n, nil
	}
}

func (l *lossyLink) Close() error {
	c, ok := l.Link.(io.Closer)
	if !ok {
		return errors.New("not closable")
	}
	return c.Close()
}

// TestRetransmission drops the first copy of every client's upgrade
// request and of the server's 101: the engine sends its request again
// on its timer, re-acknowledges what the server sends again, and every
// client opens.
func TestRetransmission(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	dev := setupTUN(t)
	const conns = 50
	n, connects, _ := startGateway(t, 0, 0)
	srv := netip.MustParseAddrPort(n.Addr("ws").String())
	l := &lossyLink{Link: dev, seen: map[string]bool{},
		dropOut: func(s segment) bool { return strings.HasPrefix(string(s.payload), "GET ") },
		dropIn:  func(s segment) bool { return strings.HasPrefix(string(s.payload), "HTTP/1.1 101") },
	}
	e := openEngine(t, Config{Server: srv, Conns: conns, Rate: -1, RTO: 100 * time.Millisecond}, l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st := e.Stats()
	if st.Opened != conns || st.Failed != 0 {
		t.Fatalf("after Open with losses: %+v", st)
	}
	if got := l.dropped.Load(); got != 2*conns {
		t.Fatalf("dropped %d packets, want %d", got, 2*conns)
	}
	if st.Retransmits < conns {
		t.Fatalf("%d retransmissions for %d dropped requests", st.Retransmits, conns)
	}
	waitFor(t, 5*time.Second, "every OnConnect", func() bool { return connects.Load() == conns })
	if err := e.Close(ctx, -1); err != nil {
		t.Fatalf("Close: %v (%+v)", err, e.Stats())
	}
	if st := e.Stats(); st.Closed != conns || st.Unexpected != 0 {
		t.Fatalf("after Close: %+v", st)
	}
}

// openEngine starts an engine on link with cfg, stopped at the test's
// end, and opens its clients (at most 20 s).
func openEngine(t *testing.T, cfg Config, link Link) *Engine {
	t.Helper()
	e, err := New(cfg, link)
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(func() { _ = e.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Open(ctx); err != nil {
		t.Fatalf("Open: %v (%+v)", err, e.Stats())
	}
	return e
}
