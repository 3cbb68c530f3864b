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

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli"
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
	var o bus.Options
	var prefix string
	o.RegisterFlags(flag.CommandLine, &prefix)
	flag.Parse()
	// The node's log settings: GATEWORK_LOG_FORMAT (text or json) and
	// GATEWORK_LOG_LEVEL (debug, info, warn or error).
	slog.SetDefault(cli.NewLogger(cli.LogConfig{Level: os.Getenv("GATEWORK_LOG_LEVEL"), Format: os.Getenv("GATEWORK_LOG_FORMAT")}, os.Stderr))
	o.Name = "echo-example"
	if err := run(o, prefix); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// run serves events until SIGINT or SIGTERM, then stops gracefully.
func run(opts bus.Options, prefix string) error {
	nc, err := bus.Connect(opts)
	if err != nil {
		return err
	}
	defer nc.Close()
	a, err := api.New(nc, api.Config{Prefix: prefix})
	if err != nil {
		return err
	}
	defer a.Close()
	w, err := worker.New(nc, a, worker.Config{Prefix: prefix}, handlers)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	slog.Info("echo worker running; Ctrl-C stops it", "nats", bus.RedactURL(opts.URL), "worker", w.ID())
	return w.Run(ctx)
}
