package load

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lesismal/nbio/logging"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

const usage = `gwload: a load generator for gatework nodes (127.0.0.0/8 targets only)

usage:
  gwload idle   [flags]   hold --conns idle connections; RSS per connection and idle CPU
                          (--tun DEV: clients emulated over a TUN device, no client sockets)
  gwload fanout [flags]   join --conns connections to group "bench", sendToGroup at --rates
  gwload echo   [flags]   --conns clients echo stamped messages; round trips/s
  gwload churn  [flags]   --concurrency loops of connect, one echo, close; connections/s
  gwload overload [flags] join --conns to group "bench"; --senders closed-loop sendToGroup callers
                          for --duration; node memory, latency, messages lost and counted
  gwload bare   [flags]   run only the bare baseline server until interrupted
  gwload child  <json>    (internal) one worker process of a run

The target needs an app that echoes (gatework start --app echo) for echo and
churn; fanout uses the HTTP API (getClientList, getClientInfo, joinGroup,
sendToGroup) and works with any app. --bare runs the workload against a bare
server started inside gwload instead, for the baseline.

flags:
`

// Main is the gwload command: it parses args (without the program name),
// runs, prints progress to stderr and the table to stdout, and returns the
// exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		newFlags(&cliFlags{}, stderr).PrintDefaults()
		return 2
	}
	logging.SetLevel(logging.LevelError)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "child":
		if len(rest) != 1 {
			fmt.Fprintln(stderr, "gwload child: want one JSON argument")
			return 2
		}
		var cc ChildConfig
		if err := json.Unmarshal([]byte(rest[0]), &cc); err != nil {
			fmt.Fprintf(stderr, "gwload child: %v\n", err)
			return 2
		}
		if err := RunChild(ctx, cc, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(stderr, "gwload child: %v\n", err)
			return 1
		}
		return 0
	case "bare":
		return mainBare(ctx, rest, stderr)
	case string(Idle), string(FanOut), string(Echo), string(Churn), string(Overload):
	default:
		fmt.Fprintf(stderr, "gwload: unknown command %q (gwload --help)\n", cmd)
		return 2
	}
	var f cliFlags
	fs := newFlags(&f, stderr)
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	cfg, err := f.config(Workload(cmd))
	if err != nil {
		fmt.Fprintf(stderr, "gwload: %v\n", err)
		return 2
	}
	cfg.Progress = stderr
	if f.bare {
		b, err := StartBare(BareConfig{Shards: f.bareShards, Coalesce: f.bareCoalesce})
		if err != nil {
			fmt.Fprintf(stderr, "gwload: %v\n", err)
			return 1
		}
		defer b.Close()
		cfg.WSAddr, cfg.HTTPAddr, cfg.PID, cfg.Bare = b.WSAddr().String(), b.HTTPAddr().String(), os.Getpid(), true
		fmt.Fprintf(stderr, "gwload: bare server on ws %s, http %s\n", cfg.WSAddr, cfg.HTTPAddr)
	}
	if f.nats != "" && !f.bare {
		c, err := dialAPI(f.nats)
		if err != nil {
			fmt.Fprintf(stderr, "gwload: %v\n", err)
			return 1
		}
		defer c.Close()
		cfg.API = c
	}
	r, err := Run(ctx, cfg)
	// A stopped TUN run still has its figures so far (the open, the
	// engine's counters, the close): print them too.
	if r != nil && (err == nil || len(r.Steps) > 0 || r.TUN != nil) {
		PrintTable(stdout, r)
		if f.jsonOut != "" {
			if werr := writeJSON(f.jsonOut, r); werr != nil {
				fmt.Fprintf(stderr, "gwload: %v\n", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "gwload: %v\n", err)
		return 1
	}
	return 0
}

type cliFlags struct {
	ws, http, token, path, rates, jsonOut, nats, pids, tun         string
	tunQueues                                                      int
	tunNoRing                                                      bool
	closeRate                                                      float64
	openMinIdle                                                    float64
	tunNoTS                                                        bool
	stopCmd                                                        string
	minFreeMiB                                                     int64
	pid, conns, maxConns, concurrency, size, perProc, procs, srcIP int
	duration, maxDuration, retryWait                               time.Duration
	bare, welcome, bareCoalesce, deflate                           bool
	bareShards, senders                                            int
	atMax, rate                                                    float64
}

func newFlags(f *cliFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gwload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.ws, "ws", "127.0.0.1:7272", "target WebSocket listener")
	fs.StringVar(&f.http, "http", "127.0.0.1:7280", "target HTTP API (fanout)")
	fs.StringVar(&f.token, "token", os.Getenv("GATEWORK_API_TOKEN"), "HTTP API bearer token (default $GATEWORK_API_TOKEN)")
	fs.StringVar(&f.nats, "nats", "", "fanout: send through the Go API client on this NATS URL (127.0.0.0/8; gatework start --nats-listen) instead of the HTTP API")
	fs.StringVar(&f.path, "path", "/", "WebSocket request path")
	fs.StringVar(&f.rates, "rates", "5,10,20,50,100,200,400", "fanout: messages/s to the group, comma-separated, tried in order")
	fs.IntVar(&f.senders, "senders", 0, "fanout, overload: sendToGroup calls in flight, one HTTP connection each (above 256, raise the node's http.max_conns); default 64 for fanout, 8 for overload")
	fs.DurationVar(&f.retryWait, "retry-wait", 0, "overload: wait after a refused send (503/429); 0: the Retry-After the node answered")
	fs.Float64Var(&f.atMax, "at-max", 0.8, "fanout: after --rates, one more step at this fraction of the highest deliveries/s reached (0: none)")
	fs.StringVar(&f.jsonOut, "json", "", "also write the result as JSON to this file")
	fs.IntVar(&f.pid, "pid", 0, "idle: the target's pid (default: every process listening on --ws, e.g. all gateway processes)")
	fs.StringVar(&f.pids, "pids", "", "more pids whose memory and CPU count as the target's, comma-separated (the master, workers): idle, echo, churn")
	fs.Int64Var(&f.minFreeMiB, "min-free", 2048, "stop the run (closing every connection) when MemAvailable drops below this many MiB; negative: never")
	fs.IntVar(&f.conns, "conns", 1000, "connections (idle, fanout, echo)")
	fs.IntVar(&f.maxConns, "max-conns", 200000, "refuse runs with more connections than this")
	fs.IntVar(&f.concurrency, "concurrency", 100, "churn: connect/echo/close loops in flight")
	fs.IntVar(&f.size, "size", 0, "message size in bytes (default 100 for fanout, 64 otherwise)")
	fs.Float64Var(&f.rate, "rate", DefaultOpenRate, "idle, fanout, echo, overload: connections opened per second over all children, at most rate × 100 ms handshakes in flight (negative: unpaced, 64 in flight per child)")
	fs.IntVar(&f.perProc, "per-proc", 15000, "most connections per child process")
	fs.IntVar(&f.procs, "procs", 0, "child processes (default: enough for --per-proc; 2 for echo and churn)")
	fs.IntVar(&f.srcIP, "src-ips", 0, "spread connections over N source addresses 127.0.0.1, 127.0.0.2, ... (on into 127.0.1.0; at most 1,024; default: one per 2,000 connections, 8 for churn)")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "idle hold, echo/churn run, and each fanout step")
	fs.DurationVar(&f.maxDuration, "max-duration", 10*time.Minute, "hard bound on the whole run")
	fs.BoolVar(&f.welcome, "welcome", false, "churn: wait for the server's first message (an OnConnect greeting, e.g. --app chat) instead of an echo")
	fs.BoolVar(&f.deflate, "deflate", false, "idle: offer permessage-deflate on every connection (as browsers do) and fail unless accepted")
	fs.StringVar(&f.tun, "tun", "", "idle: emulate the clients' TCP in this process over this TUN device (created if missing) instead of child processes with kernel sockets; --ws is then the device's own address, in the same network namespace (load/c1m.sh sets it up)")
	fs.IntVar(&f.tunQueues, "tun-queues", 1, "idle with --tun: queues of the TUN device (IFF_MULTI_QUEUE above 1), one reader each")
	fs.BoolVar(&f.tunNoRing, "tun-no-io-uring", false, "idle with --tun: read and write each packet with a system call of its own instead of through an io_uring per queue")
	fs.BoolVar(&f.tunNoTS, "tun-no-timestamps", false, "idle with --tun: the clients do not offer TCP timestamps (RFC 7323), which real clients do")
	fs.Float64Var(&f.closeRate, "close-rate", 5000, "idle with --tun: orderly closes per second at the end (negative: unpaced)")
	fs.Float64Var(&f.openMinIdle, "open-min-idle", 0, "idle with --tun: percent of the machine's CPU the open leaves idle; while less is idle (sampled every 250 ms) no new handshake starts (0: off)")
	fs.StringVar(&f.stopCmd, "stop-cmd", "", "idle with --tun: after the hold, run this shell command (one that stops the server) with every client connected, instead of the orderly close, and report how the clients ended")
	fs.BoolVar(&f.bare, "bare", false, "start the bare baseline server inside gwload and target it")
	fs.IntVar(&f.bareShards, "bare-shards", 1, "goroutines the bare server splits a broadcast over (1: the naive loop)")
	fs.BoolVar(&f.bareCoalesce, "bare-coalesce", false, "the bare server writes every queued broadcast message to a connection in one write (a stricter baseline)")
	return fs
}

func (f *cliFlags) config(w Workload) (Config, error) {
	cfg := Config{Workload: w, WSAddr: f.ws, HTTPAddr: f.http, Token: f.token, Path: f.path,
		PID: f.pid, Conns: f.conns, MaxConns: f.maxConns, Duration: f.duration, MaxDuration: f.maxDuration,
		Concurrency: f.concurrency, AtMax: f.atMax, Senders: f.senders, RetryWait: f.retryWait, Welcome: f.welcome, Deflate: f.deflate, MsgSize: f.size, OpenRate: f.rate, PerProc: f.perProc, Procs: f.procs, SrcIPs: f.srcIP,
		MinFreeBytes: f.minFreeMiB << 20, TUN: f.tun, TUNQueues: f.tunQueues, TUNNoRing: f.tunNoRing, TUNNoTimestamps: f.tunNoTS, CloseRate: f.closeRate, OpenMinIdle: f.openMinIdle, StopCmd: f.stopCmd}
	for _, s := range strings.Split(f.pids, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("--pids: %q is not a pid", s)
		}
		cfg.ExtraPIDs = append(cfg.ExtraPIDs, n)
	}
	for _, s := range strings.Split(f.rates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("--rates: %q is not a positive number", s)
		}
		cfg.Rates = append(cfg.Rates, n)
	}
	return cfg, nil
}

func mainBare(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gwload bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ws := fs.String("listen", "127.0.0.1:7290", "WebSocket listen address")
	h := fs.String("http-listen", "127.0.0.1:7291", "HTTP listen address (POST /api/sendToGroup)")
	d := fs.Duration("duration", time.Hour, "stop after this long")
	shards := fs.Int("shards", 1, "goroutines a broadcast is split over (1: the naive loop)")
	coalesce := fs.Bool("coalesce", false, "write every queued broadcast message to a connection in one write")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	b, err := StartBare(BareConfig{WSAddr: *ws, HTTPAddr: *h, Shards: *shards, Coalesce: *coalesce})
	if err != nil {
		fmt.Fprintf(stderr, "gwload bare: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "gwload bare: ws %s, http %s, pid %d (stops after %s or on interrupt)\n", b.WSAddr(), b.HTTPAddr(), os.Getpid(), *d)
	ctx, cancel := context.WithTimeout(ctx, *d)
	defer cancel()
	<-ctx.Done()
	if err := b.Close(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "gwload bare: %v\n", err)
		return 1
	}
	return 0
}

// dialAPI connects the Go API client to a NATS URL on this machine.
func dialAPI(url string) (*api.Client, error) {
	u, err := neturl.Parse(url)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("load: NATS URL %q: want nats://host:port", url)
	}
	if err := checkLoopback(u.Host); err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	c, err := api.Dial(bus.Options{URL: url, Name: "gwload"}, api.Config{})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return c, nil
}

func writeJSON(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("load: encode result: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("load: write result: %w", err)
	}
	return nil
}

// PrintTable writes r as an aligned table.
func PrintTable(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	target := r.Target
	if r.Bare {
		target += " (bare)"
	}
	fmt.Fprintf(tw, "workload\t%s\ntarget\t%s\nprocesses × source IPs\t%d × %d\n", r.Workload, target, r.Procs, r.SrcIPs)
	if r.Workload != Churn {
		fmt.Fprintf(tw, "connections\t%d of %d (%d failed)\n", r.Connected, r.Conns, r.Failed)
	}
	switch r.Workload {
	case Idle:
		fmt.Fprintf(tw, "open time\t%.1f s (%.0f connections/s)\n", r.OpenSeconds, r.OpenRate)
		if len(r.PIDs) > 1 {
			fmt.Fprintf(tw, "target processes\t%d (%d gone by the end)\n", len(r.PIDs), r.TargetsGone)
		} else {
			fmt.Fprintf(tw, "pid\t%d\n", r.PID)
		}
		if r.RSSAfterKiB > 0 { // 0: stopped before the end of the hold
			fmt.Fprintf(tw, "RSS before / after\t%d / %d KiB\nRSS per connection\t%.2f KiB\nidle CPU\t%.2f %% (%.3f cores per 100k connections)\n",
				r.RSSBeforeKiB, r.RSSAfterKiB, r.RSSPerConnBytes/1024, r.IdleCPUPercent, r.IdleCPUPer100k)
		}
		fmt.Fprintf(tw, "disconnected\t%d\n", r.Disconnected)
		if r.ClientRSSKiB > 0 {
			fmt.Fprintf(tw, "clients: RSS / per connection\t%d KiB / %.2f KiB\nclients: CPU\t%.2f %%\n",
				r.ClientRSSKiB, r.ClientPerConnBytes/1024, r.ClientCPUPercent)
		}
		if r.SlabAfterKiB > 0 {
			ends := "both ends"
			if r.TUN != nil {
				ends = "the server's end: the clients have no socket"
			}
			fmt.Fprintf(tw, "kernel slab before / after\t%d / %d KiB\nkernel per connection\t%.2f KiB (%s)\n",
				r.SlabBeforeKiB, r.SlabAfterKiB, r.KernelPerConnBytes/1024, ends)
		}
		if r.BoxCores > 0 {
			fmt.Fprintf(tw, "machine CPU busy\t%.1f %% of %d cores\n", r.BoxCPUPercent, r.BoxCores)
		}
		if r.MemAvailableMinKiB > 0 {
			fmt.Fprintf(tw, "lowest MemAvailable\t%d MiB\n", r.MemAvailableMinKiB>>10)
		}
		if t := r.TUN; t != nil {
			h, s := t.AtHoldEnd, t.Stats
			fmt.Fprintf(tw, "clients\temulated over TUN %s (%d queues)\nclients: pings answered, retransmissions\t%d, %d\n",
				t.Device, t.Queues, h.Pings, h.Retransmits)
			fmt.Fprintf(tw, "device queue drops after open / hold / close\t%d / %d / %d\n", t.DropsOpen, t.DropsHold, t.DropsEnd)
			fmt.Fprintf(tw, "unexpected: close frames / FINs / RSTs / timeouts\t%d / %d / %d / %d\n", h.ServerCloses, h.ServerFINs, h.Resets, h.Timeouts)
			if st := t.Stop; st != nil {
				fmt.Fprintf(tw, "server stopped with clients connected\t%q took %.1f s (%s); %d of %d clients gone after %.1f s\n",
					st.Cmd, st.Seconds, st.exit(), h.Live-s.Live, h.Live, st.GoneSeconds)
				fmt.Fprintf(tw, "how they ended\tclose frames 1001 %d, other close frames %d, FINs only %d, RSTs %d, timeouts %d\n",
					s.GoingAway-h.GoingAway, (s.ServerCloses-h.ServerCloses)-(s.GoingAway-h.GoingAway), s.ServerFINs-h.ServerFINs, s.Resets-h.Resets, s.Timeouts-h.Timeouts)
			} else {
				fmt.Fprintf(tw, "orderly close\t%d of %d in %.1f s (%d reset by the server, %d not finished in time, %d unexpected closes during it)\n",
					s.Closed, h.Live, t.CloseSeconds, s.CloseResets, s.CloseTimeouts, s.Unexpected-h.Unexpected)
			}
			if h.FirstError != "" {
				fmt.Fprintf(tw, "first error\t%s\n", h.FirstError)
			}
		}
		if r.GoMemAfter != nil {
			fmt.Fprintf(tw, "Go heap before / after\t%d / %d KiB\nGo heap per connection\t%.2f KiB\nGo stacks before / after\t%d / %d KiB\nGo stacks per connection\t%.2f KiB\n",
				r.GoMemBefore.HeapInuse>>10, r.GoMemAfter.HeapInuse>>10, r.HeapPerConnBytes/1024,
				r.GoMemBefore.StackInuse>>10, r.GoMemAfter.StackInuse>>10, r.StackPerConnBytes/1024)
		} else if r.GoMemErr != "" {
			fmt.Fprintf(tw, "Go heap and stacks\tnot read: %s\n", r.GoMemErr)
		}
	case Echo, Churn:
		unit, op := "round trips/s", "round trip"
		if r.Workload == Churn {
			unit, op = "connections/s", "cycle"
		}
		fmt.Fprintf(tw, "%s\t%.0f (%d in %s, %d errors)\np50 / p99 / p999\t%.2f / %.2f / %.2f ms\n",
			unit, r.PerSec, r.Count, r.Duration, r.Errors, r.P50Ms, r.P99Ms, r.P999Ms)
		if r.ServerCPUPerOpUs > 0 {
			fmt.Fprintf(tw, "server CPU (pids %v)\t%.1f µs per %s, %.1f %% of a core\n",
				r.PIDs, r.ServerCPUPerOpUs, op, r.ServerCPUPercent)
		}
	case FanOut:
		fmt.Fprintf(tw, "sender\t%s × %d\ngroup members\t%d\nmax deliveries/s\t%.0f\n", r.Sender, r.Senders, r.Members, r.MaxDeliveriesPerSec)
		fmt.Fprintln(tw, "\nrate msg/s\tsent/s\tdeliveries/s\tdelivered\tp50 ms\tp99 ms\tp999 ms")
		for _, s := range r.Steps {
			fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%d/%d\t%.2f\t%.2f\t%.2f\n", s.Rate, s.SendRate, s.DeliveriesPerSec,
				s.Delivered, s.Expected, s.P50Ms, s.P99Ms, s.P999Ms)
		}
		if s := r.AtMax; s != nil {
			fmt.Fprintf(tw, "at %.0f %% of max: %d\t%.0f\t%.0f\t%d/%d\t%.2f\t%.2f\t%.2f\n", r.AtMaxFraction*100, s.Rate, s.SendRate,
				s.DeliveriesPerSec, s.Delivered, s.Expected, s.P50Ms, s.P99Ms, s.P999Ms)
		}
	case Overload:
		if o := r.Overload; o != nil {
			fmt.Fprintf(tw, "sender\t%s × %d, closed loop\ngroup members\t%d\n", r.Sender, r.Senders, r.Members)
			fmt.Fprintf(tw, "sends accepted / refused / failed\t%d / %d / %d (%.0f accepted/s)\n", o.Accepted, o.Refused, o.Errors, o.SendsPerSec)
			fmt.Fprintf(tw, "deliveries\t%d of %d (%.0f/s), lost %d\n", o.Delivered, o.Expected, o.DeliveriesPerSec, o.Lost)
			fmt.Fprintf(tw, "node counted: sends refused / dropped / bus slow consumers\t%d / %d / %d\nlost and not counted\t%d\n",
				o.NodeSendsRefused, o.NodeDropped, o.NodeBusSlow, o.Unaccounted)
			fmt.Fprintf(tw, "p50 / p99 / p999\t%.2f / %.2f / %.2f ms\ndrain after sending\t%d ms\n", o.P50Ms, o.P99Ms, o.P999Ms, o.DrainMs)
			fmt.Fprintf(tw, "RSS idle / peak / end (pids %v)\t%d / %d / %d KiB\nRSS peak above idle\t%.1f MiB\n",
				o.PIDs, o.RSSIdleKiB, o.RSSPeakKiB, o.RSSEndKiB, float64(o.RSSGrowthKiB)/1024)
		}
	}
	_ = tw.Flush()
}
