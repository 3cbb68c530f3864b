package worker_test

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// connectBatch is what a gateway sends for a browser's WebSocket: its
// connect events, with the upgrade request.
func connectBatch(delivery uint64, client string) []byte {
	b := batch(delivery, client,
		bus.Event{Type: bus.EventConnect},
		bus.Event{Type: bus.EventWebSocketConnect, Request: &bus.HTTPRequest{Method: "GET", Path: "/ws", Query: "token=abcdef0123456789",
			Host: "example.com", Headers: []bus.Header{
				{Name: "User-Agent", Value: "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"},
				{Name: "Accept-Language", Value: "en-US,en;q=0.5"}, {Name: "Origin", Value: "https://example.com"},
				{Name: "Cookie", Value: "session=0123456789abcdef0123456789abcdef"},
			}}, BeforeUpgrade: true})
	return bus.AppendEventBatch(nil, b)
}

// wave publishes n connect batches as a gateway does, at most window out
// at once, and waits for every final ack.
func (e *env) wave(first, n, window int) {
	e.t.Helper()
	out := 0
	for i := range n {
		for out >= window {
			e.final()
			out--
		}
		d := uint64(first + i)
		if err := e.gw.PublishMsg(&nats.Msg{Subject: e.subj.Events(), Reply: e.inbox, Data: connectBatch(d, "c"+strconv.FormatUint(d, 10))}); err != nil {
			e.t.Fatal(err)
		}
		out++
	}
	for ; out > 0; out-- {
		e.final()
	}
}

// TestConnectWaveMemory is a measurement, run by hand
// (GATEWORK_WAVE=N go test ./worker -run TestConnectWaveMemory -v;
// GATEWORK_WAVE_PROFILE=1 also writes heap profiles before and after to
// /tmp/h-wmem): a worker with ReleaseMemory takes a wave of N browser
// connect batches, at most 1,024 out at once (gateway.max_in_flight), and
// the test logs where the process's memory grew once the worker released
// it (docs/benchmarks.md, "W1 worker memory, round 6"). The embedded
// NATS and the fake gateway live in the same process: their growth
// counts too. It checks that the wave was served and released.
func TestConnectWaveMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GATEWORK_WAVE"))
	if n == 0 {
		t.Skip("a measurement: set GATEWORK_WAVE=N")
	}
	e := newEnv(t)
	w, _ := e.start(worker.Config{ProgressInterval: 20 * time.Millisecond, ReleaseMemory: true}, worker.Handlers{
		OnConnect: func(c *worker.Context) {
			c.BindUID("u-" + c.ClientID())
			c.JoinGroup("g")
			c.Send([]byte("welcome"))
		},
	})
	e.wave(1, 100, 1024)
	waitFor(t, 30*time.Second, "release", func() bool { return w.Stats().MemoryReleases >= 1 && w.Stats().Pool == 0 })
	runtime.GC()
	debug.FreeOSMemory()
	before := worker.ReadMemoryFigures()
	prof := func(name string) {
		f, _ := os.Create(name)
		_ = pprof.Lookup("heap").WriteTo(f, 0)
		_ = f.Close()
	}
	if os.Getenv("GATEWORK_WAVE_PROFILE") != "" {
		runtime.MemProfileRate = 1
		prof("/tmp/h-wmem/heap-before.pb.gz")
	}
	// The wave's high-water marks, sampled every millisecond.
	var peakStacks, peakHeap uint64
	stopS := make(chan struct{})
	doneS := make(chan struct{})
	go func() {
		defer close(doneS)
		ss := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
		for {
			select {
			case <-stopS:
				return
			case <-time.After(time.Millisecond):
			}
			metrics.Read(ss)
			peakStacks = max(peakStacks, ss[0].Value.Uint64())
			peakHeap = max(peakHeap, ss[1].Value.Uint64())
		}
	}()
	e.wave(101, n, 1024)
	close(stopS)
	<-doneS
	t.Logf("N=%d peak during the wave: goroutine stacks %d KiB, heap objects %d KiB", n, peakStacks>>10, peakHeap>>10)
	waitFor(t, 30*time.Second, "release", func() bool { return w.Stats().MemoryReleases >= 2 && w.Stats().Pool == 0 })
	after := worker.ReadMemoryFigures()
	if os.Getenv("GATEWORK_WAVE_PROFILE") != "" {
		runtime.GC()
		prof("/tmp/h-wmem/heap-after.pb.gz")
	}
	t.Logf("before %+v", before)
	t.Logf("after  %+v", after)
	d := func(a, b uint64) string { return fmt.Sprintf("%+d KiB", (int64(a)-int64(b))>>10) }
	t.Logf("N=%d delta: heap in use %s free %s released %s stacks %s metadata %s other %s anon %s file %s", n,
		d(after.HeapInUse, before.HeapInUse), d(after.HeapFree, before.HeapFree), d(after.HeapReleased, before.HeapReleased),
		d(after.Stacks, before.Stacks), d(after.Metadata, before.Metadata), d(after.Other, before.Other),
		d(after.AnonRSS, before.AnonRSS), d(after.FileRSS, before.FileRSS))
}
