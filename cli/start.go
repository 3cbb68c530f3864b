package cli

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/master"
	"github.com/gatework/gatework/node"
)

func (r *runner) startCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run a node: a master with the gateway and worker processes (-d: in the background)",
		Long: `Run a whole node: a master process with an embedded NATS (or --nats-url), a
gateway with the configured listeners (WebSocket 127.0.0.1:7272 and
line-framed TCP 127.0.0.1:7273 by default) and the HTTP API and /healthz
(127.0.0.1:7280), and worker.processes worker processes (default: one per
CPU; --workers 0 runs one worker inside the master) running the chosen app
(--app; none for no workers: yours connect through --nats-listen).

-d detaches: the logs go to log_file, the pid file is written once the
node is ready, and start returns then (or says why it failed).

SIGUSR1 (or 'reload') replaces the worker processes with the binary now
on disk without losing a client or an event. SIGINT or SIGTERM (or 'stop')
stops gracefully: no new clients, queued messages flushed, close events
handled, workers drained, then exit 0 (bounded by shutdown_timeout). A
second signal exits at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return r.start(cmd) },
	}
	r.flags.add(cmd, r.appNames())
	cmd.Flags().BoolVarP(&r.daemon, "daemon", "d", false, "run in the background (pid file, log file)")
	return cmd
}

// start runs the node until cmd's context is cancelled or a signal comes;
// with -d it starts a detached copy of itself instead.
func (r *runner) start(cmd *cobra.Command) error {
	c, err := r.load(cmd)
	if err != nil {
		return err
	}
	detached := os.Getenv(envDaemon) != ""
	if r.daemon && !detached {
		return r.daemonize(cmd, c)
	}
	log := NewLogger(c.Log, cmd.ErrOrStderr())
	pidFile := c.pidFile()
	// Before anything binds a port: a second master of the same pid file
	// refuses to start.
	lock, stale, err := master.LockPIDFile(pidFile)
	if err != nil {
		return err
	}
	defer lock.Release()
	if stale != 0 {
		log.Warn("pid file of a master that is gone taken over", "pid", stale, "pid_file", pidFile)
	}
	for _, p := range masterFiles(pidFile) {
		_ = os.Remove(p) // left by a master that did not exit cleanly
	}
	m, err := newMasterRun(c, log, r.apps)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	sigs := master.NotifySignals()
	defer sigs.Stop()
	src := r.path()
	if src == "" {
		src = "(defaults, environment and flags)"
	}
	app := c.Worker.App
	if c.Worker.Webhook.URL != "" {
		app = "webhook" // the webhook worker logs its URL when it starts
	}
	log.Info("gatework starting", "version", version(), "config", src, "app", app,
		"worker_processes", m.processes(), "task_processes", m.taskProcesses(),
		"gateway_processes", max(c.gatewayProcesses(), 1))
	if err := m.start(ctx, cmd.ErrOrStderr()); err != nil {
		return err
	}
	ctl, err := master.ListenControl(master.SocketPath(pidFile), m.control)
	if err != nil {
		log.Warn("no control socket: status and the answer of reload are not available", "err", err)
	}
	busFile := m.writeWorkerBus(pidFile)
	if err := lock.Write(os.Getpid()); err != nil {
		log.Warn("no pid in the pid file: reload, stop and status will not find this master", "err", err)
	}
	logHints(log, c, m.node, m.gatewayAddr, busFile)
	// From when Wait returns, a second SIGINT or SIGTERM kills the process
	// at once.
	sigs.Wait(ctx, log, func() { _ = m.reload(context.Background()) })
	err = m.shutdown(ctx)
	if ctl != nil {
		ctl.Close()
	}
	if busFile != "" {
		_ = os.Remove(busFile)
	}
	if err != nil {
		return err
	}
	log.Info("gatework stopped")
	return nil
}

// listenerHint returns a command line that talks to listener l bound to
// addr: websocat for WebSocket, nc for TCP, and for TLS listeners wss://
// and openssl s_client (with a client certificate when the listener asks
// for one); "" for other protocols.
func listenerHint(l gateway.ListenerConfig, addr string) string {
	tls := l.TLS != nil
	switch l.Protocol {
	case "ws":
		path := l.Path
		if path == "" {
			path = "/"
		}
		if tls {
			return "websocat wss://" + addr + path
		}
		return "websocat ws://" + addr + path
	case "tcp":
		if tls {
			hint := "openssl s_client -quiet -connect " + addr
			if l.TLS.ClientCAFile != "" {
				hint += " -cert client.pem -key client-key.pem"
			}
			return hint
		}
		host, port, _ := net.SplitHostPort(addr)
		return "nc " + host + " " + port
	case "udp":
		host, port, _ := net.SplitHostPort(addr)
		return "nc -u " + host + " " + port
	}
	return ""
}

// logHints logs how to talk to the node, for a newcomer; busFile is where
// hand-started workers find the bus credentials ("" for none).
func logHints(log *slog.Logger, c Config, n *node.Node, gwAddr func(name string) net.Addr, busFile string) {
	var attrs []any
	hasWS := false
	for _, l := range c.Listeners {
		name := l.Name
		if name == "" {
			name = l.Protocol
		}
		addr := gwAddr(name)
		if addr == nil {
			continue
		}
		if l.Protocol == "ws" {
			hasWS = true
		}
		if hint := listenerHint(l, addr.String()); hint != "" {
			attrs = append(attrs, name, hint)
		}
	}
	if a := n.HTTPAddr(); a != nil {
		attrs = append(attrs, "console", "http://"+a.String()+"/")
		if c.Worker.App == "chat" && hasWS {
			attrs = append(attrs, "chat", "http://"+a.String()+"/chat")
		}
		auth := ""
		if c.HTTP.Token != "" {
			auth = `-H "Authorization: Bearer $GATEWORK_API_TOKEN" `
		}
		attrs = append(attrs, "api", "curl -X POST "+auth+"-H 'Content-Type: application/json' http://"+a.String()+"/api/getClientCount")
	}
	if u := n.NATSURL(); u != "" {
		hint := "connect to " + u + " with nats.user and nats.password"
		if busFile != "" {
			hint = "set -a; . " + shellQuote(busFile) + "; set +a; go run ./examples/echo"
		}
		attrs = append(attrs, "workers", hint)
	}
	log.Info("gatework ready, try", attrs...)
}
