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

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli/workerflag"
	"github.com/gatework/gatework/worker"
)

func main() {
	// The bus flags (-nats, -user, …, -prefix) default to the node's
	// GATEWORK_* variables; the log settings are GATEWORK_LOG_FORMAT (text
	// or json) and GATEWORK_LOG_LEVEL (debug, info, warn or error).
	var f workerflag.Flags
	f.Register(flag.CommandLine)
	flag.Parse()
	slog.SetDefault(workerflag.NewLogger(f.Log, os.Stderr))
	f.Bus.Name = "chat-example"
	// SIGINT or SIGTERM stops it gracefully: the events in hand finish.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := worker.Run(ctx, worker.RunConfig{
		Bus:      f.Bus,
		Handlers: chat.Handlers(),
		Worker:   worker.Config{Prefix: f.Prefix},
		Ready: func(w *worker.Worker, _ *nats.Conn) error {
			slog.Info("chat worker running; Ctrl-C stops it", "nats", bus.RedactURL(f.Bus.URL), "worker", w.ID())
			return nil
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}
