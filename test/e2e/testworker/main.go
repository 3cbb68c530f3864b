// Command testworker runs the end-to-end tests' app (package testapp) as a
// worker in its own process, connected to a node's NATS by URL.
//
//	testworker -nats nats://127.0.0.1:4222 [-id w1] [-concurrency 8]
//	           [-jitter 2ms] [-autojoin room] [-closelog file] [-progress 200ms]
//
// It prints "ready <worker id>" on stdout once it is subscribed. With
// -gateway it runs a gateway instead (a node with a ws and a tcp listener
// and no worker) and prints "gateway <id> <ws addr> <tcp addr>" first.
//
// It stops gracefully on SIGTERM or SIGINT, and exits at once when its
// standard input reaches end of file (the test that started it has gone),
// so that a crashed test leaves no process behind.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/test/e2e/testapp"
	"github.com/gatework/gatework/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("nats", "", "NATS URL of the node")
	id := flag.String("id", "", "worker id (default random)")
	conc := flag.Int("concurrency", 8, "handlers running at once")
	jitter := flag.Duration("jitter", 0, "random delay before each message")
	autojoin := flag.String("autojoin", "", "group every client joins on connect")
	closelog := flag.String("closelog", "", "file to which every close event is appended, one JSON line each")
	progress := flag.Duration("progress", 0, "worker.Config.ProgressInterval (0: the default); keep it well below the gateway's event timeout")
	gw := flag.Bool("gateway", false, "run a gateway (ws and tcp listeners on 127.0.0.1, no worker) instead of a worker")
	flag.Parse()
	if *url == "" {
		return fmt.Errorf("-nats is required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *gw {
		return runGateway(*url, log)
	}

	cfg := testapp.Config{Jitter: *jitter, AutoJoin: *autojoin, WorkerID: *id}
	if *closelog != "" {
		f, err := os.OpenFile(*closelog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		var mu sync.Mutex
		cfg.OnClose = func(c testapp.Closed) {
			b, _ := json.Marshal(c)
			mu.Lock()
			defer mu.Unlock()
			// One write per line: visible to readers once it returns,
			// that is before the batch is acknowledged.
			_, _ = f.Write(append(b, '\n'))
		}
	}

	// The worker user may subscribe to the worker's inboxes only.
	subj, _ := bus.NewSubjects("")
	nc, err := bus.Connect(bus.Options{URL: *url, User: os.Getenv("GATEWORK_NATS_USER"),
		Password: os.Getenv("GATEWORK_NATS_PASSWORD"), Name: "testworker", InboxPrefix: subj.Inbox(bus.RoleWorker)})
	if err != nil {
		return err
	}
	defer nc.Close()
	a, err := api.New(nc, api.Config{Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()
	w, err := worker.New(nc, a, worker.Config{ID: *id, Concurrency: *conc, ProgressInterval: *progress, Logger: log}, testapp.Handlers(cfg))
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	fmt.Printf("ready %s\n", w.ID())

	waitForEnd()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.Stop(ctx)
}

// waitForEnd returns on SIGTERM or SIGINT, and exits at once when stdin
// reaches end of file.
func waitForEnd() {
	stdinGone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinGone)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-stdinGone:
		os.Exit(3)
	}
}

// runGateway runs a node with a gateway only, on the bus at url, and
// prints "gateway <id> <ws addr> <tcp addr>" then "ready <id>".
func runGateway(url string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := node.Start(ctx, node.Config{
		Logger: log,
		NATS: node.NATSConfig{URL: url, User: os.Getenv("GATEWORK_NATS_USER"),
			Password: os.Getenv("GATEWORK_NATS_PASSWORD"), Role: bus.RoleGateway},
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{
			{Protocol: "ws", Addr: "127.0.0.1:0"},
			{Protocol: "tcp", Addr: "127.0.0.1:0"},
		}},
	})
	if err != nil {
		return err
	}
	id := n.Gateway().ID()
	fmt.Printf("gateway %s %s %s\nready %s\n", id, n.Addr("ws"), n.Addr("tcp"), id)
	waitForEnd()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	return n.Shutdown(sctx)
}
