package load

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/gatework/gatework/api"
)

// Workload names one of the load tool's workloads.
type Workload string

// The workloads of issue 6.
const (
	// Idle opens Conns connections and holds them for Duration; it
	// reports the target's RSS delta per connection and its CPU while idle.
	Idle Workload = "idle"
	// FanOut joins Conns connections to group "bench" and sends stamped
	// messages to the group through the HTTP API at increasing rates; it
	// reports deliveries/s at the clients and delivery latency.
	FanOut Workload = "fanout"
	// Echo has every connection send a stamped message and wait for it to
	// come back, in a loop, for Duration; it reports round trips/s.
	Echo Workload = "echo"
	// Churn has Concurrency loops connect, send one message, wait for its
	// echo and close, for Duration; it reports connections/s.
	Churn Workload = "churn"
	// Overload joins Conns connections to group "bench" and has Senders
	// closed-loop publishers call sendToGroup through the HTTP API as fast
	// as they get answers for Duration (after a 503 or 429 each waits
	// RetryWait, or the answer's Retry-After); it reports the node's
	// memory (all its processes), delivery latency, and every message
	// delivered, refused or counted as dropped by the node.
	Overload Workload = "overload"
)

// BenchGroup is the group the fan-out workload joins and sends to.
const BenchGroup = "bench"

// ErrNotLoopback is returned for a target outside 127.0.0.0/8: the tool
// loads only the machine it runs on.
var ErrNotLoopback = errors.New("load: target is not a 127.0.0.0/8 address")

// Config describes one run. The zero value of each field but Workload and
// WSAddr means its default.
type Config struct {
	Workload Workload
	// WSAddr is the target's WebSocket listener (host:port, 127.0.0.0/8).
	WSAddr string
	// Path is the WebSocket request path; default "/".
	Path string
	// HTTPAddr is the target's HTTP API (host:port, 127.0.0.0/8), needed
	// by the fan-out workload.
	HTTPAddr string
	// Token is the HTTP API bearer token, if the target has one.
	Token string
	// API, when set, is the Go API client the fan-out workload sends
	// through (SendToGroup over the bus) instead of the HTTP API; joins
	// still go through HTTPAddr. The caller owns it.
	API api.API
	// PID is the target's process for the idle workload's memory and CPU;
	// 0 means every process listening on WSAddr (all the gateway
	// processes of a master with gateway.processes).
	PID int
	// ExtraPIDs are more processes whose memory and CPU count as the
	// target's in the idle workload (the master with its embedded NATS,
	// the workers); nil means none.
	ExtraPIDs []int
	// MinFreeBytes stops the run, closing every connection, when the
	// machine's MemAvailable drops below it; 0 means 2 GiB, negative
	// never.
	MinFreeBytes int64
	// Conns is the number of connections (idle, fanout, echo); default 1000.
	Conns int
	// MaxConns bounds Conns (and the churn workload's total connections);
	// default 200,000.
	MaxConns int
	// Duration is how long the idle hold, the echo and churn runs and each
	// fan-out step last; default 10 s. MaxDuration bounds the whole run
	// (default 10 min): the run stops with what it has when it is reached.
	Duration, MaxDuration time.Duration
	// Concurrency is the number of churn loops in flight; default 100.
	Concurrency int
	// Welcome makes each churn cycle wait for the first message the server
	// sends on its own (an OnConnect greeting, as the chat app's help)
	// instead of sending a message and waiting for its echo.
	Welcome bool
	// MsgSize is the message size in bytes (at least 19, the timestamp);
	// default 100 for fanout, 64 for echo and churn.
	MsgSize int
	// Deflate makes every connection offer permessage-deflate (RFC 7692)
	// as browsers do, and fail unless the server accepts it. Idle only:
	// the other workloads' clients do not inflate.
	Deflate bool
	// Rates are the fan-out send rates in messages/s to the group, tried in
	// order; default 5, 10, 20, 50, 100, 200, 400. The steps stop early once
	// the clients receive less than 90 % of what was sent.
	Rates []int
	// AtMax, when in (0, 1], adds one fan-out step after Rates at that
	// fraction of the highest deliveries/s the steps reached (the send rate
	// is AtMax × max deliveries/s ÷ members), reported as Result.AtMax: the
	// issue's "p99 at 80 % of the maximum rate" is AtMax 0.8. 0 means no
	// such step.
	AtMax float64
	// Senders is the number of fan-out sends in flight: HTTP requests on as
	// many keep-alive connections, or Go client calls; default 64, at most
	// 1,024.
	// Each sender waits for its answer, so too few cap the send rate at
	// senders ÷ the API's answer time, which grows as the node fills up
	// (16 capped gatework near 1,600 msg/s to 2,000 members here).
	// A node serves at most its http.max_conns connections (256 by
	// default): more senders than that need it raised.
	Senders int
	// RetryWait is how long an overload publisher waits after a refused
	// send (503 or 429); 0 means the Retry-After the node answered (1 s
	// if none).
	RetryWait time.Duration
	// OpenRate paces the opening of the connections (idle, fanout,
	// echo, overload): connections started per second over all the
	// children, each child its share, with at most rate × 100 ms
	// handshakes in flight (at least 2 and at most 64 per child), so a
	// server slower than the rate lowers it instead of piling up
	// handshakes. 0 means 5,000/s; negative means unpaced, 64
	// handshakes in flight per child (before the pacing, the only way).
	OpenRate float64
	// PerProc is the most connections one child holds; default 15,000
	// (a process may open at most 20,000 files here).
	PerProc int
	// Procs is the number of child processes; default enough for PerProc,
	// and 2 for echo and churn. InProcess runs the children as goroutines
	// of this process instead of re-executing it (for tests).
	Procs     int
	InProcess bool
	// SrcIPs is the number of source addresses the connections are
	// spread over, 127.0.0.1, 127.0.0.2 … counting on into 127.0.1.0 and
	// beyond (1: no explicit bind); default one per srcIPConns
	// connections, and 8 for churn; at most maxSrcIPs.
	SrcIPs int
	// Bare marks the target as a bare server (no joins needed for fanout).
	Bare bool
	// TUN, for the idle workload, names a TUN device of this process's
	// network namespace (created if missing) over which package
	// load/tunclient emulates the clients' TCP in this process instead
	// of child processes with kernel sockets; "" means kernel sockets.
	// WSAddr is then the device's own IPv4 address (any private
	// address) and the clients are 10.1.0.0 onwards. See RunTUN.
	TUN string
	// TUNQueues is the number of queues the TUN device is opened with
	// (IFF_MULTI_QUEUE above 1), each read by its own goroutine; default 1.
	TUNQueues int
	// TUNNoRing makes the TUN client read and write each packet with a
	// system call of its own instead of through an io_uring per queue.
	TUNNoRing bool
	// TUNNoTimestamps makes the TUN clients leave out TCP timestamps
	// (tunclient.Config.NoTimestamps).
	TUNNoTimestamps bool
	// CloseRate paces the orderly close at the end of a TUN run, in
	// connections per second; 0 means 5,000/s, negative unpaced.
	CloseRate float64
	// OpenMinIdle, for an idle run over a TUN device, is the share of
	// the machine's CPU (percent, from /proc/stat every 250 ms) that the
	// open leaves idle: while less is idle, no new handshake starts. 0
	// means off (the open takes what OpenRate allows).
	OpenMinIdle float64
	// StopCmd, for an idle run over a TUN device, is a shell command that
	// stops the server; it runs after the hold instead of the orderly
	// close, with every client still connected. The clients answer the
	// server's close handshake, and the report says how each ended and
	// when the last one had gone (TUNResult.Stop). "" means the orderly
	// close.
	StopCmd string
	// Progress receives progress lines; nil means none.
	Progress io.Writer
}

// DefaultOpenRate is Config.OpenRate's default: the connections opened
// per second (issue 20's open rate).
const DefaultOpenRate = 5000

func (c *Config) defaults() error {
	switch c.Workload {
	case Idle, FanOut, Echo, Churn, Overload:
	default:
		return fmt.Errorf("load: unknown workload %q (idle, fanout, echo, churn, overload)", c.Workload)
	}
	if c.Deflate && c.Workload != Idle {
		return fmt.Errorf("load: --deflate is for the idle workload only (its clients read nothing), not %s", c.Workload)
	}
	if c.StopCmd != "" && c.TUN == "" {
		return errors.New("load: --stop-cmd is for idle runs over a TUN device (--tun) only")
	}
	if c.TUN != "" {
		if c.Workload != Idle {
			return fmt.Errorf("load: --tun is for the idle workload only, not %s", c.Workload)
		}
		if err := checkPrivate(c.WSAddr); err != nil {
			return err
		}
	} else if err := checkLoopback(c.WSAddr); err != nil {
		return err
	}
	if c.Workload == FanOut || c.Workload == Overload {
		if err := checkLoopback(c.HTTPAddr); err != nil {
			return fmt.Errorf("http address: %w", err)
		}
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = 2 << 30
	}
	if c.Conns <= 0 {
		c.Conns = 1000
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 200_000
	}
	if c.Conns > c.MaxConns {
		return fmt.Errorf("load: %d connections is more than --max-conns %d", c.Conns, c.MaxConns)
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = 10 * time.Minute
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 100
	}
	if c.OpenRate == 0 {
		c.OpenRate = DefaultOpenRate
	}
	if c.Senders <= 0 {
		c.Senders = 64
		if c.Workload == Overload {
			c.Senders = 8
		}
	}
	if c.RetryWait < 0 {
		return errors.New("load: negative retry wait")
	}
	if c.OpenMinIdle < 0 || c.OpenMinIdle >= 100 {
		return fmt.Errorf("load: open-min-idle %v%% is not in [0, 100)", c.OpenMinIdle)
	}
	if c.OpenMinIdle > 0 && (c.Workload != Idle || c.TUN == "") {
		return errors.New("load: --open-min-idle is for idle runs over a TUN device (--tun)")
	}
	if c.Senders > maxSenders {
		return fmt.Errorf("load: %d senders is more than %d", c.Senders, maxSenders)
	}
	if c.MsgSize <= 0 {
		c.MsgSize = 64
		if c.Workload == FanOut || c.Workload == Overload {
			c.MsgSize = 100
		}
	}
	if c.MsgSize < stampLen {
		c.MsgSize = stampLen
	}
	if c.AtMax < 0 || c.AtMax > 1 {
		return fmt.Errorf("load: at-max %v is not in [0, 1]", c.AtMax)
	}
	if len(c.Rates) == 0 {
		c.Rates = []int{5, 10, 20, 50, 100, 200, 400}
	}
	if c.PerProc <= 0 {
		c.PerProc = 15_000
	}
	if c.Procs <= 0 {
		c.Procs = (c.Conns + c.PerProc - 1) / c.PerProc
		if c.Workload == Echo || c.Workload == Churn {
			c.Procs = max(c.Procs, 2)
		}
	}
	if c.Workload == Churn {
		c.Procs = min(c.Procs, c.Concurrency)
	} else {
		c.Procs = min(c.Procs, c.Conns)
	}
	if (c.Workload != Churn) && (c.Conns+c.Procs-1)/c.Procs > c.PerProc {
		return fmt.Errorf("load: %d connections over %d processes is more than %d per process", c.Conns, c.Procs, c.PerProc)
	}
	if c.SrcIPs <= 0 {
		c.SrcIPs = min(max(1, (c.Conns+srcIPConns-1)/srcIPConns), maxSrcIPs)
		if c.Workload == Churn {
			c.SrcIPs = 8
		}
	}
	if c.SrcIPs > maxSrcIPs {
		return fmt.Errorf("load: at most %d source addresses", maxSrcIPs)
	}
	return nil
}

// checkLoopback refuses any address whose host is not in 127.0.0.0/8.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("load: address %q: %w", hostport, err)
	}
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || ip.To4() == nil || ip.To4()[0] != 127 {
		return fmt.Errorf("%w: %q", ErrNotLoopback, hostport)
	}
	return nil
}

// checkPrivate refuses a TUN target that is not a private IPv4 address
// (10/8, 172.16/12, 192.168/16): the device's own address, which the
// clients of a TUN run reach without leaving the machine.
func checkPrivate(hostport string) error {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return fmt.Errorf("load: TUN target %q: %w", hostport, err)
	}
	if !ap.Addr().Is4() || !ap.Addr().IsPrivate() {
		return fmt.Errorf("load: TUN target %q is not a private IPv4 address", hostport)
	}
	return nil
}

// srcIPs lists the source addresses; nil means no explicit bind.
func (c *Config) srcIPs() []string {
	if c.SrcIPs <= 1 {
		return nil
	}
	out := make([]string, c.SrcIPs)
	for i := range out {
		n := i + 1 // every address of 127.0.0.0/8 is the loopback's
		out[i] = fmt.Sprintf("127.0.%d.%d", n>>8, n&0xff)
	}
	return out
}

// srcIPConns is how many connections the default SrcIPs puts on one
// source address. One address has ~28,000 ephemeral ports per
// destination here, but the kernel's search for a free one (connect's
// __inet_hash_connect) grows with the connections already made from that
// address to that destination: 18,000 from one address opened at about
// 2,000/s against the bare server, from nine at 4,000-4,400/s (before,
// the default was one per 20,000).
const srcIPConns = 2_000

// maxSrcIPs bounds Config.SrcIPs (each child gets the list).
const maxSrcIPs = 1024

// maxSenders bounds Config.Senders (goroutines and HTTP connections).
const maxSenders = 1024
