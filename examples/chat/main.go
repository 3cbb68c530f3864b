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
	url := flag.String("nats", envOr("GATEWORK_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL of the node (env GATEWORK_NATS_URL)")
	var o bus.Options
	flag.StringVar(&o.User, "user", os.Getenv("GATEWORK_NATS_USER"), "NATS user (env GATEWORK_NATS_USER)")
	flag.StringVar(&o.Password, "password", os.Getenv("GATEWORK_NATS_PASSWORD"), "NATS password; a flag shows in ps: prefer env GATEWORK_NATS_PASSWORD")
	flag.StringVar(&o.Token, "token", os.Getenv("GATEWORK_NATS_TOKEN"), "NATS token; prefer env GATEWORK_NATS_TOKEN")
	flag.StringVar(&o.NKeySeedFile, "nkey", os.Getenv("GATEWORK_NATS_NKEY_SEED_FILE"), "NATS NKey seed file (env GATEWORK_NATS_NKEY_SEED_FILE)")
	flag.StringVar(&o.CredsFile, "creds", os.Getenv("GATEWORK_NATS_CREDS_FILE"), "NATS credentials file (env GATEWORK_NATS_CREDS_FILE)")
	flag.StringVar(&o.CAFile, "tls-ca", os.Getenv("GATEWORK_NATS_TLS_CA_FILE"), "CA file that verifies the NATS server (env GATEWORK_NATS_TLS_CA_FILE)")
	flag.StringVar(&o.CertFile, "tls-cert", os.Getenv("GATEWORK_NATS_TLS_CERT_FILE"), "client certificate file (env GATEWORK_NATS_TLS_CERT_FILE)")
	flag.StringVar(&o.KeyFile, "tls-key", os.Getenv("GATEWORK_NATS_TLS_KEY_FILE"), "client key file (env GATEWORK_NATS_TLS_KEY_FILE)")
	prefix := flag.String("prefix", envOr("GATEWORK_PREFIX", "gw"), "bus subject prefix of the cluster (env GATEWORK_PREFIX)")
	flag.Parse()
	// The node's log settings: GATEWORK_LOG_FORMAT (text or json) and
	// GATEWORK_LOG_LEVEL (debug, info, warn or error).
	slog.SetDefault(cli.NewLogger(cli.LogConfig{Level: os.Getenv("GATEWORK_LOG_LEVEL"), Format: os.Getenv("GATEWORK_LOG_FORMAT")}, os.Stderr))
	o.URL, o.Name = *url, "chat-example"
	if err := run(o, *prefix); err != nil {
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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
