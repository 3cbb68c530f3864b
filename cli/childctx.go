package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gatework/gatework/master"
)

// childContext returns the context a worker or user process runs in,
// and its release. It is done on SIGTERM, and on Ctrl-C unless the
// process is the master's child (proto not nil): Ctrl-C in a terminal
// reaches the whole process group, and the master decides when its
// children stop. A child's context is also done when the master's
// requests on stdin end (EOF: the master is gone, or stops the process
// that way).
func childContext(parent context.Context, proto *master.Child, log *slog.Logger) (context.Context, context.CancelFunc) {
	sigs := []os.Signal{syscall.SIGTERM, os.Interrupt}
	if proto != nil {
		signal.Ignore(os.Interrupt)
		sigs = sigs[:1]
	}
	sctx, stop := signal.NotifyContext(parent, sigs...)
	ctx, cancel := context.WithCancel(sctx)
	if proto != nil {
		go func() {
			if err := proto.Serve(); err != nil {
				log.Warn("the master's requests", "err", err)
			}
			cancel()
		}()
	}
	return ctx, func() {
		cancel()
		stop()
	}
}
