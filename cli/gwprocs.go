package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/master"
	"github.com/gatework/gatework/node"
)

// maxGatewayProcesses bounds gateway.processes.
const maxGatewayProcesses = 1024

// envGatewayChild marks a gateway process run by a master (its value is
// childFromStdin): its bus and settings, a gatewaySpec, come as the first
// line of its standard input.
const envGatewayChild = "_GATEWORK_GATEWAY"

// gatewaySpec is what a gateway process gets from its master: the bus
// (the embedded NATS's gateway user, or the external NATS's credentials)
// and the master's configuration, its listeners at the addresses the
// master resolved.
type gatewaySpec struct {
	busCreds
	InsecureNoAuth bool     `json:"insecure_no_auth,omitempty"`
	Role           bus.Role `json:"role"`
	// Config is the master's configuration as YAML (Config.YAML), without
	// the HTTP tokens and the bus credentials.
	Config string `json:"config"`
}

// gatewayProcs are the gateway processes of a master with
// gateway.processes above 1.
type gatewayProcs struct {
	sup      *master.Supervisor
	addrs    map[string]net.Addr // by listener name: the resolved addresses
	reserved []io.Closer         // the held ports, closed by close
}

// gatewayProcesses returns how many gateway processes the master runs as
// children: 0 when its gateway runs inside it.
func (c Config) gatewayProcesses() int {
	if c.Gateway.Processes > 1 {
		return c.Gateway.Processes
	}
	return 0
}

// startGateways resolves and holds the listeners' addresses, then starts
// the gateway processes and waits until they are all ready.
func (m *masterRun) startGateways(ctx context.Context, stderr io.Writer) error {
	g := &gatewayProcs{addrs: map[string]net.Addr{}}
	m.gw = g
	cc := m.cfg
	cc.Listeners = slices.Clone(m.cfg.Listeners)
	for i, l := range cc.Listeners {
		a, closer, err := gateway.ReserveAddr(l.Protocol, l.Addr)
		if err != nil {
			return fmt.Errorf("gateway processes: listener %s: %w", listenerName(l), err)
		}
		g.reserved = append(g.reserved, closer)
		g.addrs[listenerName(l)] = a
		cc.Listeners[i].Addr = a.String()
	}
	// The children need neither the API's tokens nor the master's bus
	// credentials: theirs come in the spec.
	cc.HTTP.Token, cc.HTTP.Tokens = "", nil
	cc.NATS = NATSConfig{}
	cc.Worker.Webhook = WebhookConfig{}
	y, err := cc.YAML()
	if err != nil {
		return fmt.Errorf("gateway processes: %w", err)
	}
	role := bus.RoleGateway
	if m.cfg.NATS.URL != "" {
		role = m.nc.NATS.Role
	}
	spec := gatewaySpec{
		busCreds:       credsOf(m.node.GatewayOptions("")),
		InsecureNoAuth: m.cfg.NATS.InsecureNoAuth, Role: role, Config: string(y),
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("gateway processes: %w", err)
	}
	exe, err := master.ProgramPath()
	if err != nil {
		return fmt.Errorf("gateway processes: %w", err)
	}
	env := childEnv(envGatewayChild)
	if n := m.cfg.Gateway.GOMAXPROCS; n > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(n))
	} else if n := m.cfg.Gateway.Processes; n >= runtime.NumCPU() && os.Getenv("GOMAXPROCS") == "" {
		// As many processes as cores or more: one thread of Go code each
		// (one shard, one event loop) uses every core with the fewest
		// threads, wake-ups and idle spinning.
		env = append(env, "GOMAXPROCS=1")
	}
	sup, err := master.New(master.Config{
		Path:        exe,
		Args:        []string{"gateway"},
		Env:         env,
		Handoff:     b,
		Processes:   m.cfg.Gateway.Processes,
		StopTimeout: m.shutdownTimeout(),
		Stderr:      stderr,
		Logger:      m.log.With("component", "master"),
		Kind:        "gateway process",
	})
	if err != nil {
		return err
	}
	g.sup = sup
	if err := sup.Start(ctx); err != nil {
		return fmt.Errorf("gateway processes: %w", err)
	}
	return nil
}

// close releases the held ports.
func (g *gatewayProcs) close() {
	for _, c := range g.reserved {
		_ = c.Close()
	}
}

// childEnv is the environment of a child process marked with the variable
// mark: the master's, without the secrets of the configuration (the
// children get what they need on stdin) and the other internal marks.
func childEnv(mark string) []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, envChild+"=", envGatewayChild+"=", envDaemon+"=", "GATEWORK_NATS_PASSWORD=", "GATEWORK_NATS_TOKEN=",
			"GATEWORK_HTTP_TOKEN=", "GATEWORK_API_TOKEN=") {
			env = append(env, kv)
		}
	}
	return append(env, mark+"="+childFromStdin)
}

func listenerName(l gateway.ListenerConfig) string {
	if l.Name != "" {
		return l.Name
	}
	return l.Protocol
}

// gatewayStatus adds the gateway processes to rep.
func (m *masterRun) gatewayStatus(rep *statusReport, now time.Time) {
	stats := m.gw.sup.Stats(statsTimeout)
	ps, counters := m.gw.sup.Status()
	rep.Gateways = &counters
	for _, p := range ps {
		r, _ := master.RSS(p.PID)
		up := now.Sub(p.Started)
		g := processStatus{Role: "gateway", PID: p.PID, Uptime: up.Truncate(time.Second).String(),
			UptimeSeconds: up.Seconds(), RSSBytes: r}
		g.Slot, g.Generation, g.Ready, g.Restarts = &p.Slot, &p.Generation, &p.Ready, &p.Restarts
		var gs gatewayChildStats
		if js, ok := stats[p.PID]; ok && json.Unmarshal(js, &gs) == nil {
			g.Connections, g.Gateway, g.Bus = &gs.Gateway.Connections, &gs.Gateway, gs.Bus
		}
		rep.Processes = append(rep.Processes, g)
	}
}

// gatewayChildStats is a gateway process's answer to master.StatsRequest.
type gatewayChildStats struct {
	Gateway gateway.Stats `json:"gateway"`
	// Bus is the state of its NATS connection.
	Bus string `json:"bus"`
}

// runGatewayChild runs a gateway process of a master: its settings from
// stdin, its gateway until SIGTERM or the end of stdin (the master is
// gone), then a graceful stop bounded by shutdown_timeout. It writes
// master.ReadyLine once its listeners accept.
func (r *runner) runGatewayChild(cmd *cobra.Command) error {
	_ = os.Unsetenv(envGatewayChild)
	proto, handoff, err := master.NewChild(os.Stdin, cmd.OutOrStdout())
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	var spec gatewaySpec
	if err := json.Unmarshal(handoff, &spec); err != nil {
		return fmt.Errorf("gateway: bad settings from the master (%d bytes): %w", len(handoff), err)
	}
	c := DefaultConfig(r.defaultApp())
	if probs := c.loadYAML("the master's settings", []byte(spec.Config)); len(probs) > 0 {
		return fmt.Errorf("gateway: %w", asError(probs))
	}
	c.Worker.App, c.Worker.Webhook = appNone, WebhookConfig{}
	c.HTTP.Addr = "" // the master serves the HTTP API and /healthz
	log := NewLogger(c.Log, cmd.ErrOrStderr()).With("role", "gateway", "pid", os.Getpid())
	nc, err := c.NodeConfig(log)
	if err != nil {
		return err
	}
	nc.NATS = spec.natsConfig()
	nc.NATS.InsecureNoAuth, nc.NATS.Role = spec.InsecureNoAuth, spec.Role
	nc.Gateway.ReusePort = true
	// The master's API client follows the heartbeats for the node: its
	// gateway processes follow none (O(N) deliveries, not N²), except
	// under dispatch by uid, where each must know the live gateways to
	// find a uid's owner (docs/tasks.md).
	nc.Gateway.IgnorePeerHeartbeats = nc.Gateway.Dispatch != gateway.DispatchUID
	nc.NoAPI = true // the master serves the API
	// Ctrl-C in a terminal reaches the whole process group: the master
	// decides when its gateways stop.
	signal.Ignore(os.Interrupt)
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	n, err := node.Start(sctx, nc)
	scancel()
	if err != nil {
		return err
	}
	proto.SetStats(func() any {
		return gatewayChildStats{Gateway: n.Gateway().Stats(), Bus: n.BusStatus()}
	})
	go func() {
		// EOF: the master is gone, or stops this process that way.
		if err := proto.Serve(); err != nil {
			log.Warn("the master's requests", "err", err)
		}
		cancel()
	}()
	if err := proto.Ready(); err != nil {
		err = fmt.Errorf("gateway: %w", err)
		return errors.Join(err, shutdownNode(ctx, n, time.Duration(c.ShutdownTimeout)))
	}
	<-ctx.Done()
	// A tenth of shutdown_timeout is left for the exit: the master kills
	// a gateway process that takes longer than shutdown_timeout, and one
	// that gives up on events says so first (gateway.LostEventsError).
	timeout := time.Duration(c.ShutdownTimeout)
	if timeout <= 0 {
		timeout = defaultShutdownTimeout
	}
	if err := shutdownNode(ctx, n, timeout-timeout/10); err != nil {
		return err
	}
	log.Info("gateway process stopped")
	return nil
}

// shutdownNode stops n gracefully within timeout (0: the default).
func shutdownNode(ctx context.Context, n *node.Node, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultShutdownTimeout
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	return n.Shutdown(dctx)
}

// gatewayAddr returns the address of the listener named name: the
// in-process gateway's, or the one the gateway processes share.
func (m *masterRun) gatewayAddr(name string) net.Addr {
	if m.gw != nil {
		return m.gw.addrs[name]
	}
	return m.node.Addr(name)
}
