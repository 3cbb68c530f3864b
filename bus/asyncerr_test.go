package bus_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
)

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConnectCountsSlowConsumers: a connection made by Connect hands its
// slow consumers to Options.Errors, which counts every one and logs the
// first, then no more than a line per 10 seconds.
func TestConnectCountsSlowConsumers(t *testing.T) {
	e := startEmbedded(t, natsembed.Config{})
	var logs syncBuffer
	errs := bus.NewAsyncErrors(slog.New(slog.NewTextHandler(&logs, nil)))
	o := e.ConnectOptions("slow")
	o.Errors = errs
	nc, err := bus.Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	release := make(chan struct{})
	defer close(release)
	// Two subscriptions stuck in their handler, one message pending at
	// most: each becomes a slow consumer once.
	for _, subject := range []string{"slow.a", "slow.b"} {
		sub, err := nc.Subscribe(subject, func(*nats.Msg) { <-release })
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(1, 1<<20); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := nc.Publish(subject, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for errs.SlowConsumers() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("SlowConsumers = %d, want 2", errs.SlowConsumers())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := errs.SlowConsumers(); got != 2 {
		t.Errorf("SlowConsumers = %d, want 2", got)
	}
	if got := errs.Others(); got != 0 {
		t.Errorf("Others = %d, want 0", got)
	}
	out := logs.String()
	if n := strings.Count(out, "msg=\"bus: slow consumer"); n != 1 {
		t.Errorf("%d log lines about slow consumers, want 1 (rate-limited):\n%s", n, out)
	}
	if !strings.Contains(out, "subject=slow.") || !strings.Contains(out, "dropped=") {
		t.Errorf("log line without subject or dropped count:\n%s", out)
	}
}
