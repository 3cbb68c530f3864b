package master

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Signals is the signal policy of a master process: SIGINT and SIGTERM
// stop it gracefully (a second one kills it at once), SIGUSR1 reloads its
// worker processes (what `gatework reload` sends when the control socket
// is not there).
type Signals struct {
	ch chan os.Signal
}

// NotifySignals starts catching SIGINT, SIGTERM and SIGUSR1, so that
// those that come while the master starts wait for Wait. Stop ends it.
func NotifySignals() *Signals {
	s := &Signals{ch: make(chan os.Signal, 4)}
	signal.Notify(s.ch, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	return s
}

// Wait blocks until ctx is done or SIGINT or SIGTERM comes (logged),
// calling reload on a goroutine of its own for each SIGUSR1. When it
// returns, SIGINT and SIGTERM have their default action again: a second
// one kills the process at once, whatever the graceful stop is doing.
func (s *Signals) Wait(ctx context.Context, log *slog.Logger, reload func()) {
	defer signal.Reset(os.Interrupt, syscall.SIGTERM)
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-s.ch:
			if sig == syscall.SIGUSR1 {
				go reload()
				continue
			}
			log.Info("signal received", "signal", sig.String())
			return
		}
	}
}

// Stop stops catching the signals.
func (s *Signals) Stop() { signal.Stop(s.ch) }
