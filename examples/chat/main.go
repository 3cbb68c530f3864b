// Command chat runs the demo chat room (package apps/chat) as a worker in
// its own process, for a gatework node started with `gatework start --app
// none --nats-listen 127.0.0.1:4222`. Start several: events are spread
// over all of them, and the room works the same. See README.md.
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
	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/worker"
)

func main() {
	var o bus.Options
	var prefix string
	o.RegisterFlags(flag.CommandLine, &prefix)
	flag.Parse()
	// The node's log settings: GATEWORK_LOG_FORMAT (text or json) and
	// GATEWORK_LOG_LEVEL (debug, info, warn or error).
	slog.SetDefault(cli.NewLogger(cli.LogConfig{Level: os.Getenv("GATEWORK_LOG_LEVEL"), Format: os.Getenv("GATEWORK_LOG_FORMAT")}, os.Stderr))
	o.Name = "chat-example"
	if err := run(o, prefix); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

// run serves events until SIGINT or SIGTERM, then stops gracefully.
func run(opts bus.Options, prefix string) error {
	// The chat needs the API (IsUidOnline, SendToGroup, SendToUid, lists):
	// Dial makes a client with its own connection.
	a, err := api.Dial(opts, api.Config{Prefix: prefix})
	if err != nil {
		return err
	}
	defer a.Close()
	nc, err := bus.Connect(opts)
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := worker.New(nc, a, worker.Config{Prefix: prefix}, chat.Handlers())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	slog.Info("chat worker running; Ctrl-C stops it", "nats", bus.RedactURL(opts.URL), "worker", w.ID())
	return w.Run(ctx)
}
