// Command echo is a worker in its own process: it serves the clients of a
// gatework node started with `gatework start --app none --nats-listen
// 127.0.0.1:4222` and answers every message to its sender. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli/workerflag"
	"github.com/gatework/gatework/worker"
)

// handlers is the whole app: the worker calls them for every client event.
var handlers = worker.Handlers{
	OnConnect: func(c *worker.Context) {
		slog.Info("connected", "client", c.ClientID(), "remote", c.Info().RemoteIP)
	},
	OnMessage: func(c *worker.Context, msg []byte) {
		if c.Binary() { // a WebSocket binary frame goes back as one
			c.SendBinary(msg)
			return
		}
		c.Send(msg)
	},
	OnClose: func(c *worker.Context) {
		slog.Info("closed", "client", c.ClientID(), "reason", c.CloseReason())
	},
}

func main() {
	// The bus flags (-nats, -user, …, -prefix) default to the node's
	// GATEWORK_* variables; the log settings are GATEWORK_LOG_FORMAT (text
	// or json) and GATEWORK_LOG_LEVEL (debug, info, warn or error).
	var f workerflag.Flags
	f.Register(flag.CommandLine)
	flag.Parse()
	slog.SetDefault(workerflag.NewLogger(f.Log, os.Stderr))
	f.Bus.Name = "echo-example"
	// SIGINT or SIGTERM stops it gracefully: the events in hand finish.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := worker.Run(ctx, worker.RunConfig{
		Bus:      f.Bus,
		Handlers: handlers,
		Worker:   worker.Config{Prefix: f.Prefix},
		Ready: func(w *worker.Worker, _ *nats.Conn) error {
			slog.Info("echo worker running; Ctrl-C stops it", "nats", bus.RedactURL(f.Bus.URL), "worker", w.ID())
			return nil
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}
