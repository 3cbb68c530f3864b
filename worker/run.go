package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// DefaultDrainTimeout is how long Run and Worker.Run let the batches in
// hand finish once their context is done.
const DefaultDrainTimeout = 30 * time.Second

// readyFlushTimeout bounds the flush after which Run's subscription is
// known to the server.
const readyFlushTimeout = 5 * time.Second

// RunConfig is what Run needs to serve a worker process: how to reach the
// bus, the handlers and the worker's and API client's settings. Only Bus
// and Handlers matter for most programs; the zero value of every other
// field means its default.
type RunConfig struct {
	// Bus says how to reach the bus (bus.Connect); its InboxPrefix must
	// be one the credentials may subscribe to (the worker's,
	// Subjects.Inbox(bus.RoleWorker), for a worker user).
	Bus bus.Options
	// Handlers is the app.
	Handlers Handlers
	// Worker configures the worker: Prefix, Concurrency, ID, Logger….
	Worker Config
	// API configures the API client of the handlers (Context.API). Its
	// Prefix and Logger, when empty, are Worker's.
	API api.Config
	// DrainTimeout bounds the drain once the context is done: batches
	// still in hand then are abandoned (the gateways redeliver them to
	// another worker). 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Ready, when set, is called once the worker serves (its subscription
	// is known to the server: events reach it from then on), with the
	// worker and its connection, e.g. to report readiness or stats. An
	// error stops the worker and Run returns it.
	Ready func(w *Worker, nc *nats.Conn) error
}

// Run serves events in this process until ctx is done, then drains: it
// connects to the bus, makes the API client and the worker, starts it,
// calls cfg.Ready, waits for ctx (the caller chooses the signals that
// cancel it, e.g. with signal.NotifyContext), stops the worker within
// cfg.DrainTimeout and closes the connection. It returns the first error
// of these steps; nil after a clean drain.
func Run(ctx context.Context, cfg RunConfig) error {
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.API.Prefix == "" {
		cfg.API.Prefix = cfg.Worker.Prefix
	}
	if cfg.API.Logger == nil && cfg.Worker.Logger != nil {
		cfg.API.Logger = cfg.Worker.Logger.With("component", "api")
	}
	nc, err := bus.Connect(cfg.Bus)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer nc.Close()
	a, err := api.New(nc, cfg.API)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer a.Close()
	w, err := New(nc, a, cfg.Worker, cfg.Handlers)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	// The subscription is known to the server once the flush returns:
	// from then on, events reach this process.
	if err := nc.FlushTimeout(readyFlushTimeout); err != nil {
		_ = w.Stop(context.Background())
		return fmt.Errorf("worker: flush: %w", err)
	}
	if cfg.Ready != nil {
		if err := cfg.Ready(w, nc); err != nil {
			_ = w.Stop(context.Background())
			return err
		}
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.DrainTimeout)
	defer cancel()
	if err := w.Stop(sctx); err != nil {
		return err
	}
	// The final acks of the drain leave before the connection closes.
	_ = nc.FlushTimeout(time.Second)
	return nil
}
