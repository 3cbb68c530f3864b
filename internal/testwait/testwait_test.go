package testwait_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/internal/testwait"
)

// recorder is a testing.TB that records a Fatalf instead of ending the
// test; Fatalf stops the calling goroutine as the real one does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

// run calls testwait.For with r and reports whether it failed.
func run(r *recorder, timeout time.Duration, cond func() bool) (failed bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != r {
				panic(p)
			}
			failed = true
		}
	}()
	testwait.For(r, timeout, "the thing", cond)
	return false
}

func TestFor(t *testing.T) {
	var n atomic.Int32
	r := &recorder{TB: t}
	if run(r, time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatalf("failed on a condition that holds on the third call: %s", r.msg)
	}
	r = &recorder{TB: t}
	start := time.Now()
	if !run(r, 30*time.Millisecond, func() bool { return false }) {
		t.Fatal("did not fail on a condition that never holds")
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 30ms", d)
	}
	if want := "timed out after 30ms waiting for the thing"; r.msg != want {
		t.Errorf("message %q, want %q", r.msg, want)
	}
}
