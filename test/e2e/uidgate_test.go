package e2e

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/worker"
)

// uidFleet is gateways and workers over one embedded bus, for dispatch
// by uid across gateways.
type uidFleet struct {
	e   *natsembed.Server
	gws []*gateway.Server
	ncs []*nats.Conn
}

// startUIDFleet starts workers (concurrency 8 each, running h) and gws
// gateways dispatching by mode, with 100ms heartbeats and a 400ms uid
// gate lease, and waits until every gateway sees every other live.
func startUIDFleet(t *testing.T, mode string, gws, workers int, h *worker.Handlers) *uidFleet {
	t.Helper()
	return startFleet(t, testLogger(t), mode, gws, workers, 8, h)
}

// startFleet is startUIDFleet with a logger and the workers' concurrency.
func startFleet(t testing.TB, log *slog.Logger, mode string, gws, workers, concurrency int, h *worker.Handlers) *uidFleet {
	t.Helper()
	f := &uidFleet{e: testbus.Start(t, natsembed.Config{})}
	for i := range workers {
		nc := testbus.Conn(t, f.e, fmt.Sprintf("worker%d", i))
		a, err := api.New(nc, api.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close() })
		w, err := worker.New(nc, a, worker.Config{Logger: log, Concurrency: concurrency}, *h)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = w.Stop(ctx)
		})
	}
	for i := range gws {
		nc := testbus.Conn(t, f.e, fmt.Sprintf("gw%d", i))
		gw, err := gateway.New(nc, gateway.Config{
			Logger:            log,
			Dispatch:          mode,
			HeartbeatInterval: 100 * time.Millisecond,
			UIDGateLease:      400 * time.Millisecond,
			Listeners:         []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := gw.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Short: a gateway a test cut from the bus cannot hand its
			// last batches over and waits for the whole deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = gw.Shutdown(ctx)
		})
		f.gws, f.ncs = append(f.gws, gw), append(f.ncs, nc)
	}
	if mode == gateway.DispatchUID {
		// Every gateway must name the same owner for a set of uids:
		// then each sees all the others live.
		deadline := time.Now().Add(5 * time.Second)
		for !f.agreed() {
			if time.Now().After(deadline) {
				t.Fatal("gateways do not agree on the owners of uids")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return f
}

// agreed reports whether the gateways name the same owner for 64 uids
// and together name every gateway as the owner of some.
func (f *uidFleet) agreed() bool {
	owners := map[string]bool{}
	for i := range 64 {
		uid := "probe" + strconv.Itoa(i)
		o := f.gws[0].UIDGateOwner(uid)
		for _, gw := range f.gws[1:] {
			if gw.UIDGateOwner(uid) != o {
				return false
			}
		}
		owners[o] = true
	}
	return len(owners) == len(f.gws)
}

// uidClient is a TCP client bound to a uid.
type uidClient struct {
	conn net.Conn
	rd   *bufio.Reader
}

// dialBound connects to gw's tcp listener and binds the client to uid.
func dialBound(t *testing.T, gw *gateway.Server, uid string) *uidClient {
	t.Helper()
	conn, err := net.Dial("tcp", gw.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &uidClient{conn: conn, rd: bufio.NewReader(conn)}
	if _, err := conn.Write([]byte("bind " + uid + "\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := c.rd.ReadString('\n'); err != nil || l != "bound\n" {
		t.Fatalf("bind: %q %v", l, err)
	}
	return c
}

// run sends "seq 0" .. "seq n-1" at once and reads the n answers in
// order; mid, when not nil, is called after the first half arrived.
func (c *uidClient) run(n int, mid func()) error {
	var b strings.Builder
	for j := range n {
		fmt.Fprintf(&b, "seq %d\n", j)
	}
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		return err
	}
	for j := range n {
		if j == n/2 && mid != nil {
			mid()
		}
		l, err := c.rd.ReadString('\n')
		if err != nil || l != "ok "+strconv.Itoa(j)+"\n" {
			return fmt.Errorf("answer %d: %q %v", j, l, err)
		}
	}
	return nil
}

// runAll runs every client at once (run(n, mid[i])) and reports errors.
func runAll(t *testing.T, clients []*uidClient, n int, mid func(i int) func()) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		var m func()
		if mid != nil {
			m = mid(i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.run(n, m); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkOrder fails unless each of clients clients' handlers ran 0..n-1 in
// order.
func (p *uidProbe) checkOrder(t *testing.T, clients, n int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) != clients {
		t.Fatalf("clients seen: %d, want %d", len(p.seen), clients)
	}
	for id, seq := range p.seen {
		for j, v := range seq {
			if v != j || len(seq) != n {
				t.Fatalf("client %s handled %v, want 0..%d in order", id, seq, n-1)
			}
		}
	}
}

// TestDispatchByUIDAcrossGateways: a uid with 2 connections on each of 2
// gateways, served by 2 workers: under dispatch uid no two of its events
// are handled at once (the gate is cluster-wide: per gateway, the two
// gateways would overlap) and each connection's are handled in order;
// under dispatch client the same load overlaps.
func TestDispatchByUIDAcrossGateways(t *testing.T) {
	for _, mode := range []string{gateway.DispatchUID, gateway.DispatchClient} {
		t.Run(mode, func(t *testing.T) {
			p := &uidProbe{seen: map[string][]int{}}
			f := startUIDFleet(t, mode, 2, 2, p.handlers())
			var clients []*uidClient
			for i := range 4 {
				clients = append(clients, dialBound(t, f.gws[i%2], "u1"))
			}
			const n = 30
			runAll(t, clients, n, nil)
			if mode == gateway.DispatchClient {
				if p.overlaps.Load() == 0 {
					t.Error("dispatch client: no overlap seen; the probe proves nothing")
				}
				return
			}
			if o := p.overlaps.Load(); o != 0 {
				t.Errorf("dispatch uid: %d events of the uid handled while another ran", o)
			}
			p.checkOrder(t, len(clients), n)
			for _, gw := range f.gws {
				testwait.For(t, 5*time.Second, "nothing in flight after the run", func() bool {
					return gw.Stats().InFlight == 0
				})
			}
		})
	}
}

// TestDispatchByUIDOwnerDies: the owner of a uid's gate (a third gateway
// with no client of the uid) loses the bus mid-run, without saying it
// leaves: the uid's connections on the two other gateways go on once
// membership drops it and the gate moves (no deadlock), each in order.
func TestDispatchByUIDOwnerDies(t *testing.T) {
	p := &uidProbe{seen: map[string][]int{}}
	f := startUIDFleet(t, gateway.DispatchUID, 3, 2, p.handlers())
	uid := ""
	for i := 0; uid == ""; i++ {
		if u := "u" + strconv.Itoa(i); f.gws[0].UIDGateOwner(u) == f.gws[2].ID() {
			uid = u
		}
	}
	var clients []*uidClient
	for i := range 4 {
		clients = append(clients, dialBound(t, f.gws[i%2], uid))
	}
	var once sync.Once
	const n = 40
	start := time.Now()
	runAll(t, clients, n, func(int) func() {
		return func() { once.Do(func() { f.ncs[2].Close() }) }
	})
	p.checkOrder(t, len(clients), n)
	if o := f.gws[0].UIDGateOwner(uid); o == f.gws[2].ID() || o != f.gws[1].UIDGateOwner(uid) {
		t.Errorf("owner after the death: %s and %s", o, f.gws[1].UIDGateOwner(uid))
	}
	t.Logf("run took %v; overlaps around the move: %d", time.Since(start), p.overlaps.Load())
}

// BenchmarkDispatchUIDAcrossGateways is BenchmarkDispatchUID over 2
// gateways (half the clients on each) and one worker, on one embedded
// bus: with "own" uids about half the batches take their gate from the
// other gateway (three bus messages each), with "shared" (3 clients per
// uid, spread over both gateways) the uid's clients also wait for each
// other across gateways.
func BenchmarkDispatchUIDAcrossGateways(b *testing.B) {
	benchDispatchModes(b, func(b *testing.B, mode string, echo *worker.Handlers) func(int) string {
		f := startFleet(b, slog.New(slog.DiscardHandler), mode, 2, 1, 64, echo)
		return func(i int) string { return f.gws[i%2].Addr("tcp").String() }
	})
}

// TestDispatchByUIDOwnerUnserved: a live gateway that does not serve uid
// gates (a version without them: here, heartbeats published by hand) owns
// the uid; the uid's batches go ahead after one lease without an answer,
// counted, instead of stalling.
func TestDispatchByUIDOwnerUnserved(t *testing.T) {
	p := &uidProbe{seen: map[string][]int{}}
	f := startUIDFleet(t, gateway.DispatchUID, 1, 1, p.handlers())
	const mute = "0123456789"
	nc := testbus.Conn(t, f.e, "mute")
	subj := bus.Subjects{Prefix: bus.DefaultPrefix}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			hb := bus.Heartbeat{Gateway: mute, IntervalMs: 100, StartedUnixMs: time.Now().UnixMilli()}
			_ = nc.Publish(subj.Heartbeat(), bus.AppendHeartbeat(nil, &hb))
			select {
			case <-tk.C:
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	uid := ""
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; uid == ""; i++ {
		if u := "u" + strconv.Itoa(i%64); f.gws[0].UIDGateOwner(u) == mute {
			uid = u
		}
		if time.Now().After(deadline) {
			t.Fatal("the mute gateway owns no uid: not seen live")
		}
		if i%64 == 63 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	clients := []*uidClient{dialBound(t, f.gws[0], uid), dialBound(t, f.gws[0], uid)}
	const n = 10
	runAll(t, clients, n, nil)
	p.checkOrder(t, len(clients), n)
	if o := p.overlaps.Load(); o != 0 {
		t.Errorf("%d overlaps: the local gate still holds on one gateway", o)
	}
	if st := f.gws[0].Stats(); st.UIDGatesUnserved == 0 {
		t.Error("no batch counted as unserved")
	}
}

// TestDispatchByUIDHolderDies: the gateway holding a uid's gate loses the
// bus while a worker runs its batch (its hold is never released: the ack
// cannot reach it); the owner, a third gateway, hands the gate on when
// the hold's lease ends, and the uid's connection on the other gateway
// gets all its answers, in order.
func TestDispatchByUIDHolderDies(t *testing.T) {
	p := &uidProbe{seen: map[string][]int{}, slowStarted: make(chan struct{})}
	f := startUIDFleet(t, gateway.DispatchUID, 3, 2, p.handlers())
	uid := ""
	for i := 0; uid == ""; i++ {
		if u := "u" + strconv.Itoa(i); f.gws[0].UIDGateOwner(u) == f.gws[2].ID() {
			uid = u
		}
	}
	dying, other := dialBound(t, f.gws[0], uid), dialBound(t, f.gws[1], uid)
	if _, err := dying.conn.Write([]byte("slow\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.slowStarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow handler never started")
	}
	f.ncs[0].Close() // the holder dies with the batch out
	start := time.Now()
	const n = 20
	if err := other.run(n, nil); err != nil {
		t.Fatalf("the other gateway's client: %v", err)
	}
	// The gate was held: the other client waited for the end of the
	// dead holder's lease (400ms, renewed every 100ms).
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("the other client's run took %v: it did not wait for the dead holder's lease", d)
	}
	if o := p.overlaps.Load(); o != 0 {
		t.Errorf("%d overlaps", o)
	}
}
