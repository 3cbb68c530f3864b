package bus

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// asyncLogEvery is the least time between two log lines of one
// AsyncErrors; the errors in between are counted and reported with the
// next line.
const asyncLogEvery = 10 * time.Second

// AsyncErrors handles the errors a NATS connection reports asynchronously
// (its nats.ErrHandler): above all slow consumers, a subscription that
// fell behind its pending limits (or, for a channel subscription, found
// its channel full), so that the NATS client dropped messages for it. It
// counts them and logs at most one line per 10 seconds, with the number
// of errors left unlogged since the last line. Safe for concurrent use.
type AsyncErrors struct {
	log        *slog.Logger
	slow       atomic.Uint64
	other      atomic.Uint64
	lastLogNs  atomic.Int64
	suppressed atomic.Uint64
}

// NewAsyncErrors returns an AsyncErrors logging to log; nil means
// slog.Default().
func NewAsyncErrors(log *slog.Logger) *AsyncErrors {
	if log == nil {
		log = slog.Default()
	}
	return &AsyncErrors{log: log}
}

// Handle is the nats.ErrHandler: it counts err and logs it unless a line
// was logged less than 10 seconds ago. It never blocks on anything but
// the logger.
func (a *AsyncErrors) Handle(_ *nats.Conn, sub *nats.Subscription, err error) {
	slow := errors.Is(err, nats.ErrSlowConsumer)
	if slow {
		a.slow.Add(1)
	} else {
		a.other.Add(1)
	}
	now := time.Now().UnixNano()
	last := a.lastLogNs.Load()
	if (last != 0 && now-last < int64(asyncLogEvery)) || !a.lastLogNs.CompareAndSwap(last, now) {
		a.suppressed.Add(1)
		return
	}
	attrs := []any{"err", err, "unlogged_since_last", a.suppressed.Swap(0)}
	if sub != nil {
		attrs = append(attrs, "subject", sub.Subject)
		if n, derr := sub.Dropped(); derr == nil {
			attrs = append(attrs, "dropped", n)
		}
	}
	if slow {
		a.log.Warn("bus: slow consumer: the NATS client dropped messages of a subscription", attrs...)
		return
	}
	a.log.Warn("bus: asynchronous error", attrs...)
}

// SlowConsumers returns how many slow-consumer errors were reported. NATS
// reports one each time a subscription starts dropping, not one per
// dropped message (see nats.Subscription.Dropped).
func (a *AsyncErrors) SlowConsumers() uint64 { return a.slow.Load() }

// Others returns how many other asynchronous errors were reported
// (permission violations, for example).
func (a *AsyncErrors) Others() uint64 { return a.other.Load() }
