package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/node"
)

// defaultShutdownTimeout applies when shutdown_timeout is 0.
const defaultShutdownTimeout = 15 * time.Second

func (r *runner) startCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run a node in the foreground until SIGINT or SIGTERM",
		Long: `Run a whole node in this process: an embedded NATS (or --nats-url), a gateway
with the configured listeners (WebSocket 127.0.0.1:7272 and line-framed TCP
127.0.0.1:7273 by default), the HTTP API and /healthz (127.0.0.1:7280) and a
worker running the chosen app (--app; none for workers in other processes,
which reach the embedded NATS through --nats-listen).

SIGINT or SIGTERM stops it gracefully: no new clients, queued messages
flushed, close events handled, then exit 0 (bounded by shutdown_timeout).
A second signal exits at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return r.start(cmd) },
	}
	r.flags.add(cmd, r.appNames())
	return cmd
}

// start runs the node until cmd's context is cancelled or a signal comes.
func (r *runner) start(cmd *cobra.Command) error {
	c, err := r.load(cmd)
	if err != nil {
		return err
	}
	log := NewLogger(c.Log, cmd.ErrOrStderr())
	nc, err := c.NodeConfig(log, r.apps...)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src := r.path()
	if src == "" {
		src = "(defaults, environment and flags)"
	}
	log.Info("gatework starting", "version", version(), "config", src, "app", c.Worker.App)
	n, err := node.Start(ctx, nc)
	if err != nil {
		return err
	}
	logHints(log, c, n)
	<-ctx.Done()
	stop() // from now on a second signal kills the process at once
	timeout := time.Duration(c.ShutdownTimeout)
	if timeout == 0 {
		timeout = defaultShutdownTimeout
	}
	log.Info("shutting down", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("gatework stopped")
	return nil
}

// logHints logs how to talk to the node, for a newcomer.
func logHints(log *slog.Logger, c Config, n *node.Node) {
	var attrs []any
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
		auth := ""
		if c.HTTP.Token != "" {
			auth = `-H "Authorization: Bearer $GATEWORK_API_TOKEN" `
		}
		attrs = append(attrs, "api", "curl -X POST "+auth+"http://"+a.String()+"/api/getClientCount")
	}
	if u := n.NATSURL(); u != "" {
		attrs = append(attrs, "workers", "connect to "+u)
	}
	log.Info("gatework ready, try", attrs...)
}
