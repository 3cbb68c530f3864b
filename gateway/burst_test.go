package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatework/gatework/worker"
)

// TestConnectBurstSends: a burst of 300 clients connects to a gateway
// whose one worker is far smaller than the burst: it holds 4 running + 16
// waiting batches and drops the rest, which the gateway must redeliver
// (the proportions of the defaults: 1024 in flight per gateway, 128 + 16 ×
// 128 per worker process on 2 cores). With the in-flight window below what
// the worker holds, the burst waits at the gateway: every event is handled
// once and at most 1.2 batches are published per event (measured 1.00).
// With a window 3 × too large, it is cut on the first timeouts: every
// event is still handled, none is dead-lettered, and the sends stay
// bounded (measured 1.17–1.18; the same gateway without a window and
// redelivering at each timeout, as before: 2.51–2.61).
func TestConnectBurstSends(t *testing.T) {
	for _, tc := range []struct {
		window   int
		maxRatio float64
	}{{16, 1.2}, {64, 1.2}, {1024, 1.2}} {
		t.Run(fmt.Sprint("window_", tc.window), func(t *testing.T) { connectBurst(t, tc.window, tc.maxRatio) })
	}
}

func connectBurst(t *testing.T, window int, maxRatio float64) {
	connectBurstCfg(t, Config{EventTimeout: 400 * time.Millisecond, RedeliveryBackoff: 100 * time.Millisecond, MaxInFlight: window}, maxRatio)
}

// connectBurstCfg runs the burst against a gateway configured by cfg.
func connectBurstCfg(t *testing.T, cfg Config, maxRatio float64) {
	const clients = 300
	nc := testBus(t)
	var mu sync.Mutex
	handled := map[string]int{}
	w, err := worker.New(nc, nil, worker.Config{Concurrency: 4, Backlog: 16, ProgressInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}, worker.Handlers{
		OnConnect: func(c *worker.Context) {
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			handled[c.ClientID()]++
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop(context.Background()) }()
	s := redeliveryServer(t, nc, cfg)
	// The gateway stops before the worker (deferred calls run before the
	// cleanup), so that the clients' close events are handled.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	conns := make([]net.Conn, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", s.Addr("tcp").String())
			if err != nil {
				t.Error(err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		if n == clients && s.inFlight() == 0 {
			break
		}
		if time.Now().After(deadline) {
			st := s.Stats()
			t.Fatalf("%d of %d connect events handled; stats: sent %d, again %d, timed out %d, dead %d, in flight %d",
				n, clients, st.EventsSent, st.Redelivered, st.TimedOut, st.DeadLettered, s.inFlight())
		}
	}
	took := time.Since(start)
	st := s.Stats()
	dup := 0
	mu.Lock()
	for _, n := range handled {
		dup += n - 1
	}
	mu.Unlock()
	sends := st.EventsSent + st.Redelivered
	ratio := float64(sends) / clients
	t.Logf("%d connects in %v: %d batches published (%d first, %d again; %d refused busy, %d timed out, %d dead), %.2f per event; %d handled twice; worker dropped %d; window %d",
		clients, took.Round(time.Millisecond), sends, st.EventsSent, st.Redelivered, st.Busy, st.TimedOut, st.DeadLettered, ratio, dup, w.Stats().Dropped, st.Window)
	if ratio > maxRatio || st.DeadLettered != 0 || (maxRatio <= 1.2 && dup != 0) {
		t.Errorf("%.2f batches per event (want at most %.2f), %d dead-lettered, %d handled twice", ratio, maxRatio, st.DeadLettered, dup)
	}
}
