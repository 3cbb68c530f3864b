// Package phase puts periodic work on wall-clock boundaries: a timer of
// period d fires at the multiples of d since the Unix epoch. The timers
// of a process then fire together, and so do those of every process of a
// node (the gateway processes' heartbeats, the workers' announcements):
// one wake-up for all of them instead of one each. An idle Go process
// pays a wake-up dearly (the scheduler, sysmon, a futex or two), and a
// node runs up to one gateway process per 19,000 connections, whose
// heartbeats the master hears.
//
// Usage, in place of a time.Ticker:
//
//	t := time.NewTimer(phase.Until(d))
//	defer t.Stop()
//	for {
//		select {
//		case <-t.C:
//			work()
//			t.Reset(phase.Until(d))
//		...
//		}
//	}
package phase

import "time"

// Until returns how long until the next multiple of d (since the Unix
// epoch) that is at least d/2 away, so that a timer that fired a little
// before its boundary (wall and monotonic clocks drift apart) does not
// fire again at once: the result is in [d/2, 3d/2). A d of 0 or less
// returns d.
func Until(d time.Duration) time.Duration {
	return until(time.Now(), d)
}

// UntilOffset is Until on the boundaries moved by offset: multiples of d
// plus offset. Work that must not fire in every process at once (a sweep
// that writes to many sockets) takes a per-process offset: it still
// fires at the same instants each period, just not those of the other
// processes.
func UntilOffset(d, offset time.Duration) time.Duration {
	return until(time.Now().Add(-offset), d)
}

func until(now time.Time, d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	u := d - time.Duration(now.UnixNano()%int64(d))
	if u < d/2 {
		u += d
	}
	return u
}
