// Package testwait is the tests' one way to wait for a condition: poll it
// with a short, growing sleep until it holds or a deadline passes, then
// fail the test naming what it waited for. Tests use it instead of
// time.Sleep.
package testwait

import (
	"testing"
	"time"
)

// For polls cond until it holds, sleeping 1 ms at first and at most 10 ms
// between calls, and fails t (Fatalf, from the calling goroutine) with
// "timed out after <timeout> waiting for <what>" if it still does not hold
// after timeout. cond runs on the caller's goroutine.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	sleep := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 10*time.Millisecond)
	}
}
