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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

// uidProbe is a handler that detects overlapping events of one uid: "bind
// U" binds the client and answers "bound"; "seq N" counts the handlers of
// the client's uid running at once (an overlap when more than one), holds
// for 1ms, records the client's N and answers "ok N". "slow" signals
// slowStarted (when set), holds for 300ms and answers "ok slow".
type uidProbe struct {
	slowStarted chan struct{}
	running     atomic.Int32
	overlaps    atomic.Int32
	mu          sync.Mutex
	seen        map[string][]int // by client id, in handling order
}

func (p *uidProbe) handlers() *worker.Handlers {
	return &worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) {
		verb, arg, _ := strings.Cut(string(msg), " ")
		switch verb {
		case "bind":
			c.BindUID(arg)
			c.Send([]byte("bound"))
		case "slow":
			if p.slowStarted != nil {
				close(p.slowStarted)
			}
			time.Sleep(300 * time.Millisecond)
			c.Send([]byte("ok slow"))
		case "seq":
			if p.running.Add(1) > 1 {
				p.overlaps.Add(1)
			}
			time.Sleep(time.Millisecond)
			n, _ := strconv.Atoi(arg)
			p.mu.Lock()
			p.seen[c.ClientID()] = append(p.seen[c.ClientID()], n)
			p.mu.Unlock()
			p.running.Add(-1)
			c.Send([]byte("ok " + arg))
		}
	}}
}

// runUIDClients connects 3 TCP clients, binds them to one uid, then has
// each send n "seq" messages at once and read the n answers.
func runUIDClients(t *testing.T, c *cluster, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		conn, err := net.Dial("tcp", c.tcpAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		rd := bufio.NewReader(conn)
		if _, err := conn.Write([]byte("bind u1\n")); err != nil {
			t.Fatal(err)
		}
		if l, err := rd.ReadString('\n'); err != nil || l != "bound\n" {
			t.Fatalf("client %d bind: %q %v", i, l, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b strings.Builder
			for j := range n {
				fmt.Fprintf(&b, "seq %d\n", j)
			}
			if _, err := conn.Write([]byte(b.String())); err != nil {
				errs <- err
				return
			}
			for j := range n {
				l, err := rd.ReadString('\n')
				if err != nil || l != "ok "+strconv.Itoa(j)+"\n" {
					errs <- fmt.Errorf("client %d answer %d: %q %v", i, j, l, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDispatchByUID: under dispatch uid the events of 3 connections bound
// to one uid are never handled at once, though the worker runs 8 batches
// at once, and each connection's are handled in order; under dispatch
// client (the default) the same load overlaps (the probe sees it).
func TestDispatchByUID(t *testing.T) {
	for _, mode := range []string{gateway.DispatchUID, gateway.DispatchClient} {
		t.Run(mode, func(t *testing.T) {
			p := &uidProbe{seen: map[string][]int{}}
			c := startCluster(t, clusterConfig{handlers: p.handlers(), dispatch: mode})
			const n = 40
			runUIDClients(t, c, n)
			if mode == gateway.DispatchClient {
				if p.overlaps.Load() == 0 {
					t.Error("dispatch client: no overlap seen; the probe proves nothing")
				}
				return
			}
			if o := p.overlaps.Load(); o != 0 {
				t.Errorf("dispatch uid: %d events of the uid handled while another ran", o)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.seen) != 3 {
				t.Fatalf("clients seen: %d", len(p.seen))
			}
			for id, seq := range p.seen {
				for j, v := range seq {
					if v != j || len(seq) != n {
						t.Fatalf("client %s handled %v, want 0..%d in order", id, seq, n-1)
					}
				}
			}
			// The last answers may come in a progress ack, before the
			// final one ends the batch.
			testwait.For(t, 5*time.Second, "nothing in flight after the run", func() bool {
				return c.n.Gateway().Stats().InFlight == 0
			})
		})
	}
}

// BenchmarkDispatchUID measures round trips per second of 24 TCP clients,
// each sending a message and waiting for its echo, by dispatch mode and
// binding: "unbound" (no uid: the gate is never taken), "own" (each client
// its own uid: one gate per batch, never contended) and "shared" (3
// clients per uid: a uid's clients take turns).
func BenchmarkDispatchUID(b *testing.B) {
	benchDispatchModes(b, func(b *testing.B, mode string, echo *worker.Handlers) func(int) string {
		n := startBenchNode(b, echo, mode)
		return func(int) string { return n.Addr("tcp").String() }
	})
}

// benchDispatchModes runs benchUIDEcho with 24 clients for each dispatch
// mode and binding, against the gateways that start returns (the address
// of client i) for a mode and an echo worker that binds on "bind <uid>".
func benchDispatchModes(b *testing.B, start func(b *testing.B, mode string, echo *worker.Handlers) func(i int) string) {
	echo := &worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) {
		if uid, ok := strings.CutPrefix(string(msg), "bind "); ok {
			c.BindUID(uid)
		}
		c.Send(msg)
	}}
	const clients = 24
	for _, mode := range []string{gateway.DispatchClient, gateway.DispatchUID} {
		for _, bind := range []string{"unbound", "own", "shared"} {
			b.Run(mode+"/"+bind, func(b *testing.B) {
				benchUIDEcho(b, clients, bind, start(b, mode, echo))
			})
		}
	}
}

// startBenchNode starts a node with a tcp listener (line framing) and an
// in-process worker running h, dispatching by mode; logs are discarded.
func startBenchNode(b *testing.B, h *worker.Handlers, mode string) *node.Node {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := node.Start(ctx, node.Config{
		Logger: slog.New(slog.DiscardHandler),
		Gateway: gateway.Config{
			Dispatch:  mode,
			Listeners: []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}},
		},
		Worker: node.WorkerConfig{Handlers: h, Concurrency: 64},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

// benchUIDEcho runs the dispatch-by-uid benchmark's loop: clients TCP
// connections (client i to addr(i)), bound as bind says ("unbound", "own":
// a uid each, "shared": one uid per 3), each echoing b.N/clients lines
// one at a time; it reports round trips per second.
func benchUIDEcho(b *testing.B, clients int, bind string, addr func(i int) string) {
	b.Helper()
	conns := make([]*bufio.ReadWriter, clients)
	for i := range conns {
		nc, err := net.Dial("tcp", addr(i))
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		rw := bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc))
		conns[i] = rw
		uid := ""
		switch bind {
		case "own":
			uid = "u" + strconv.Itoa(i)
		case "shared":
			uid = "u" + strconv.Itoa(i/3)
		}
		if uid != "" {
			_, _ = rw.WriteString("bind " + uid + "\n")
			_ = rw.Flush()
			if _, err := rw.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
	}
	per := max(1, b.N/clients)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, rw := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				_, _ = rw.WriteString("x\n")
				_ = rw.Flush()
				if _, err := rw.ReadString('\n'); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*clients)/time.Since(start).Seconds(), "rt/s")
}
