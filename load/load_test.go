package load

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

func TestMain(m *testing.M) {
	// Run re-executes the test binary as `<binary> child <json>` for its
	// child processes (TestChildProcesses): be that child.
	if len(os.Args) == 3 && os.Args[1] == "child" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	// nbio starts a task pool when its package is initialised.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"))
}

// target is one server the workloads run against.
type target struct {
	name     string
	ws, http string
	bare     bool
	api      api.API // nil for the bare server
	stop     func()
}

func startNode(t testing.TB) target { return startNodeApp(t, echo.Handlers()) }

func startNodeApp(t testing.TB, h worker.Handlers) target {
	t.Helper()
	n, err := node.Start(context.Background(), node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}},
		HTTP:    node.HTTPConfig{Addr: "127.0.0.1:0"},
		Worker:  node.WorkerConfig{Handlers: &h},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	return target{name: "gatework", ws: n.Addr("ws").String(), http: n.HTTPAddr().String(), api: n.API(),
		stop: func() { _ = n.Shutdown(context.Background()) }}
}

func startBare(t testing.TB) target { return startBareWith(t, false) }

// startBareCoalesce starts the bare server in its coalescing mode.
func startBareCoalesce(t testing.TB) target { return startBareWith(t, true) }

func startBareWith(t testing.TB, coalesce bool) target {
	t.Helper()
	if raceEnabled {
		t.Skip("nbhttp v1.6.12 races internally (see race_test.go); run without -race")
	}
	b, err := StartBare(BareConfig{Shards: 2, Coalesce: coalesce, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("StartBare: %v", err)
	}
	return target{name: "bare", ws: b.WSAddr().String(), http: b.HTTPAddr().String(), bare: true,
		stop: func() { _ = b.Close() }}
}

func checkOrdered(t *testing.T, p50, p99, p999 float64) {
	t.Helper()
	if p50 <= 0 || p50 > p99 || p99 > p999 {
		t.Errorf("percentiles not ordered: p50 %v p99 %v p999 %v", p50, p99, p999)
	}
}

// TestWorkloads runs every workload briefly against an in-process node
// with the echo app and against the bare server, children in-process.
func TestWorkloads(t *testing.T) {
	for _, start := range []struct {
		name string
		f    func(testing.TB) target
	}{{"gatework", startNode}, {"bare", startBare}, {"bare-coalesce", startBareCoalesce}} {
		t.Run(start.name, func(t *testing.T) {
			tg := start.f(t)
			defer tg.stop()
			fanOutCheck := func(t *testing.T, r *Result) {
				if len(r.Steps) != 1 || r.Members != r.Conns || r.Senders != 64 {
					t.Fatalf("fanout: %d steps, %d members, %d senders (want the default 64)", len(r.Steps), r.Members, r.Senders)
				}
				s := r.Steps[0]
				if s.Sent == 0 || s.Delivered != s.Expected || s.DeliveriesPerSec <= 0 {
					t.Errorf("fanout: sent %d, delivered %d of %d, %v/s", s.Sent, s.Delivered, s.Expected, s.DeliveriesPerSec)
				}
				checkOrdered(t, s.P50Ms, s.P99Ms, s.P999Ms)
				// The --at-max step runs at half the max reached.
				a := r.AtMax
				wantRate := max(int(0.5*r.MaxDeliveriesPerSec/float64(r.Members)+0.5), 1)
				if a == nil || r.AtMaxFraction != 0.5 || a.Rate != wantRate || a.Sent == 0 || a.Delivered != a.Expected {
					t.Errorf("fanout at max: %+v (fraction %v), want rate %d and every delivery", a, r.AtMaxFraction, wantRate)
				}
			}
			tests := []struct {
				w     Workload
				goAPI bool // fan-out through the Go API client
				check func(*testing.T, *Result)
			}{
				{Idle, false, func(t *testing.T, r *Result) {
					if r.RSSAfterKiB <= 0 || r.IdleCPUPercent < 0 || r.Disconnected != 0 {
						t.Errorf("idle: rss %d KiB, cpu %v %%, %d disconnected", r.RSSAfterKiB, r.IdleCPUPercent, r.Disconnected)
					}
					switch {
					case tg.bare && r.GoMemErr == "": // clients share the process: no figures
						t.Errorf("idle: bare in-process reported Go memory %+v", r.GoMemAfter)
					case !tg.bare && (r.GoMemAfter == nil || r.GoMemAfter.HeapInuse <= 0 || r.GoMemAfter.StackInuse <= 0):
						t.Errorf("idle: node's Go memory not read: %+v (%s)", r.GoMemAfter, r.GoMemErr)
					}
				}},
				{FanOut, false, fanOutCheck},
				{FanOut, true, fanOutCheck},
				{Echo, false, func(t *testing.T, r *Result) {
					if r.Count == 0 || r.PerSec <= 0 || r.Errors != 0 {
						t.Errorf("echo: %d round trips, %v/s, %d errors", r.Count, r.PerSec, r.Errors)
					}
					checkOrdered(t, r.P50Ms, r.P99Ms, r.P999Ms)
				}},
				{Churn, false, func(t *testing.T, r *Result) {
					if r.Count == 0 || r.PerSec <= 0 || r.Errors != 0 {
						t.Errorf("churn: %d cycles, %v/s, %d errors", r.Count, r.PerSec, r.Errors)
					}
					checkOrdered(t, r.P50Ms, r.P99Ms, r.P999Ms)
				}},
			}
			for _, tt := range tests {
				name := string(tt.w)
				if tt.goAPI {
					name += "-go-client"
				}
				t.Run(name, func(t *testing.T) {
					if tt.goAPI && tg.api == nil {
						t.Skip("the bare server has no Go API")
					}
					cfg := Config{Workload: tt.w, WSAddr: tg.ws, HTTPAddr: tg.http, Bare: tg.bare,
						PID: os.Getpid(), Conns: 40, Procs: 2, SrcIPs: 2, InProcess: true,
						Duration: 400 * time.Millisecond, MaxDuration: 20 * time.Second,
						Concurrency: 4, Rates: []int{50}, AtMax: 0.5}
					if tt.goAPI {
						cfg.API = tg.api
					}
					r, err := Run(context.Background(), cfg)
					if err != nil {
						t.Fatalf("Run: %v", err)
					}
					if tt.w != Churn && (r.Connected != cfg.Conns || r.Failed != 0) {
						t.Fatalf("connected %d of %d, %d failed", r.Connected, cfg.Conns, r.Failed)
					}
					tt.check(t, r)
					PrintTable(io.Discard, r)
				})
			}
		})
	}
}

func TestConfigRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want error
		says string // in the error's text
	}{
		{"remote ws", Config{Workload: Echo, WSAddr: "10.0.0.1:7272"}, ErrNotLoopback, ""},
		{"remote http", Config{Workload: FanOut, WSAddr: "127.0.0.1:7272", HTTPAddr: "example.com:80"}, ErrNotLoopback, ""},
		{"ipv6", Config{Workload: Echo, WSAddr: "[::1]:7272"}, ErrNotLoopback, ""},
		{"too many", Config{Workload: Idle, WSAddr: "127.0.0.1:7272", Conns: 10, MaxConns: 5}, nil, "max-conns"},
		{"unknown", Config{Workload: "x", WSAddr: "127.0.0.1:7272"}, nil, "workload"},
		{"at-max above 1", Config{Workload: FanOut, WSAddr: "127.0.0.1:7272", HTTPAddr: "127.0.0.1:7280", AtMax: 1.5}, nil, "at-max"},
		{"too many senders", Config{Workload: FanOut, WSAddr: "127.0.0.1:7272", HTTPAddr: "127.0.0.1:7280", Senders: maxSenders + 1}, nil, "senders"},
		{"deflate echo", Config{Workload: Echo, WSAddr: "127.0.0.1:7272", Deflate: true}, nil, "idle workload only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.cfg)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Run = %v, want %v / %q", err, tt.want, tt.says)
			}
		})
	}
}

func TestFindListenerPID(t *testing.T) {
	tg := startBare(t)
	defer tg.stop()
	pid, err := FindListenerPID(tg.ws)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("FindListenerPID = %d, %v; want %d", pid, err, os.Getpid())
	}
	if _, err := ReadProcStats(pid); err != nil {
		t.Fatal(err)
	}
}

// TestChildProcesses runs the echo and fan-out workloads with real child
// processes (this test binary re-executed) against an in-process node.
func TestChildProcesses(t *testing.T) {
	tg := startNode(t)
	defer tg.stop()
	for _, w := range []Workload{Echo, FanOut} {
		t.Run(string(w), func(t *testing.T) {
			r, err := Run(context.Background(), Config{Workload: w, WSAddr: tg.ws, HTTPAddr: tg.http,
				Conns: 20, Procs: 2, Duration: 300 * time.Millisecond, MaxDuration: 20 * time.Second, Rates: []int{20}})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if r.Connected != 20 || r.Procs != 2 {
				t.Fatalf("connected %d over %d processes, want 20 over 2", r.Connected, r.Procs)
			}
			if w == Echo && (r.Count == 0 || r.Errors != 0) {
				t.Errorf("echo: %d round trips, %d errors", r.Count, r.Errors)
			}
			if w == FanOut && (len(r.Steps) != 1 || r.Steps[0].Delivered != r.Steps[0].Expected || r.Steps[0].Sent == 0) {
				t.Errorf("fanout: %+v", r.Steps)
			}
		})
	}
}

// TestChurnWelcome waits for the chat app's OnConnect greeting instead of
// an echo.
func TestChurnWelcome(t *testing.T) {
	tg := startNodeApp(t, chat.Handlers())
	defer tg.stop()
	r, err := Run(context.Background(), Config{Workload: Churn, WSAddr: tg.ws, Welcome: true, InProcess: true,
		Concurrency: 4, Duration: 300 * time.Millisecond, MaxDuration: 20 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Count == 0 || r.Errors != 0 {
		t.Fatalf("churn: %d cycles, %d errors", r.Count, r.Errors)
	}
}

// TestDialDeflate: with deflate a client offers permessage-deflate and
// fails unless the server accepts it.
func TestDialDeflate(t *testing.T) {
	h := echo.Handlers()
	n, err := node.Start(context.Background(), node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{
			{Protocol: "ws", Addr: "127.0.0.1:0"},
			{Name: "wsz", Protocol: "ws", Addr: "127.0.0.1:0", Compression: gateway.Compression{Enabled: true}},
		}},
		Worker: node.WorkerConfig{Handlers: &h},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	}()
	c, err := dialWS(context.Background(), "ws://"+n.Addr("wsz").String()+"/", "", true)
	if err != nil {
		t.Fatalf("deflate offer to a compression listener: %v", err)
	}
	_ = c.Close()
	if _, err := dialWS(context.Background(), "ws://"+n.Addr("ws").String()+"/", "", true); err == nil || !strings.Contains(err.Error(), "permessage-deflate") {
		t.Fatalf("deflate offer to a plain listener: %v, want a refusal", err)
	}
}

// TestOverloadWorkload runs the overload workload briefly against an
// in-process node whose backlog bound is tiny, so that sends are refused,
// and checks that every message is accounted for: delivered, refused with
// 503 before it was queued, or counted by the node.
func TestOverloadWorkload(t *testing.T) {
	h := echo.Handlers()
	n, err := node.Start(context.Background(), node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}, MaxQueuedBytes: 4 << 10},
		HTTP:    node.HTTPConfig{Addr: "127.0.0.1:0"},
		Worker:  node.WorkerConfig{Handlers: &h},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	defer func() { _ = n.Shutdown(context.Background()) }()
	r, err := Run(context.Background(), Config{Workload: Overload, WSAddr: n.Addr("ws").String(), HTTPAddr: n.HTTPAddr().String(),
		PID: os.Getpid(), Conns: 40, Procs: 2, InProcess: true, RetryWait: 5 * time.Millisecond,
		Duration: 500 * time.Millisecond, MaxDuration: 30 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	o := r.Overload
	if o == nil || r.Senders != 8 || r.Members != 40 {
		t.Fatalf("overload: %+v, %d senders (want the default 8), %d members", o, r.Senders, r.Members)
	}
	if o.Accepted == 0 || o.Errors != 0 || o.Expected != o.Accepted*40 || o.RSSIdleKiB <= 0 || o.RSSPeakKiB < o.RSSIdleKiB {
		t.Errorf("overload: %+v", o)
	}
	if o.NodeSendsRefused < 0 || o.NodeDropped < 0 || o.NodeBusSlow < 0 {
		t.Errorf("the node's counters were not read: %+v", o)
	}
	if o.Unaccounted != 0 || o.Lost != o.NodeSendsRefused*40+o.NodeDropped {
		t.Errorf("lost %d deliveries, the node counted %d refused sends and %d drops: %d unaccounted",
			o.Lost, o.NodeSendsRefused, o.NodeDropped, o.Unaccounted)
	}
	checkOrdered(t, o.P50Ms, o.P99Ms, o.P999Ms)
	t.Logf("accepted %d, refused %d (503), node refused %d", o.Accepted, o.Refused, o.NodeSendsRefused)
	PrintTable(io.Discard, r)
}

func TestParseNodeCounters(t *testing.T) {
	in := `# HELP gatework_gateway_sends_refused_total x
# TYPE gatework_gateway_sends_refused_total counter
gatework_gateway_sends_refused_total 3
gatework_gateway_dropped_messages_total{policy="disconnect"} 2
gatework_gateway_dropped_messages_total{policy="drop_oldest"} 5
gatework_gateway_bus_slow_consumers_total 1
gatework_gateway_sends_refused_other 9
`
	n, err := parseNodeCounters(strings.NewReader(in))
	if err != nil || n != (nodeCounters{sendsRefused: 3, dropped: 7, busSlow: 1}) {
		t.Fatalf("parseNodeCounters = %+v, %v", n, err)
	}
}
