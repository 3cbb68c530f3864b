package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

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
	if pid, ok := runningPID(pidFile); ok {
		if detached {
			return fmt.Errorf("gatework is already running (pid %d, pid file %s)", pid, pidFile)
		}
		log.Warn("another master holds the pid file: reload, stop and status will not reach this one", "pid", pid, "pid_file", pidFile)
		pidFile = ""
	}
	m, err := newMasterRun(c, log, r.apps)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	src := r.path()
	if src == "" {
		src = "(defaults, environment and flags)"
	}
	log.Info("gatework starting", "version", version(), "config", src, "app", c.Worker.App,
		"worker_processes", m.processes())
	if err := m.start(ctx, cmd.ErrOrStderr()); err != nil {
		return err
	}
	var ctl *controlServer
	if pidFile != "" {
		if ctl, err = listenControl(socketPath(pidFile), log, m.control); err != nil {
			log.Warn("no control socket: status and the answer of reload are not available", "err", err)
		}
		if err := writePIDFile(pidFile, os.Getpid()); err != nil {
			log.Warn("no pid file: reload, stop and status will not find this master", "err", err)
			pidFile = ""
		}
	}
	busFile := ""
	if pidFile != "" {
		busFile = m.writeWorkerBus(pidFile)
	}
	logHints(log, c, m.node, busFile)
	for stop := false; !stop; {
		select {
		case <-ctx.Done():
			stop = true
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				go func() { _ = m.reload(context.Background()) }()
				continue
			}
			log.Info("signal received", "signal", s.String())
			stop = true
		}
	}
	// From now on a second SIGINT or SIGTERM kills the process at once.
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	err = m.shutdown(ctx)
	if ctl != nil {
		ctl.close()
	}
	if pidFile != "" {
		removePIDFile(pidFile, os.Getpid())
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

// logHints logs how to talk to the node, for a newcomer; busFile is where
// hand-started workers find the bus credentials ("" for none).
func logHints(log *slog.Logger, c Config, n *node.Node, busFile string) {
	var attrs []any
	hasWS := false
	for _, l := range c.Listeners {
		name := l.Name
		if name == "" {
			name = l.Protocol
		}
		addr := n.Addr(name)
		if addr == nil {
			continue
		}
		switch l.Protocol {
		case "ws":
			hasWS = true
			path := l.Path
			if path == "" {
				path = "/"
			}
			attrs = append(attrs, name, "websocat ws://"+addr.String()+path)
		case "tcp":
			host, port, _ := net.SplitHostPort(addr.String())
			attrs = append(attrs, name, "nc "+host+" "+port)
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
		attrs = append(attrs, "api", "curl -X POST "+auth+"http://"+a.String()+"/api/getClientCount")
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
