package worker_test

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/gatework/gatework/worker"
)

// gcPercent reads the process's GC percent.
func gcPercent() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestHeapFloorUnderLoad: a worker with a heap floor raises the GC
// percent while batches keep its collector busy (here each handler call
// collects), and puts GOGC back once no batch comes, and at Stop.
func TestHeapFloorUnderLoad(t *testing.T) {
	base := gcPercent()
	e := newEnv(t)
	w, _ := e.start(worker.Config{HeapFloor: 16 << 20, ProgressInterval: 100 * time.Millisecond},
		worker.Handlers{OnMessage: func(c *worker.Context, m []byte) {
			runtime.GC()
			c.Send(m)
		}})
	deadline := time.Now().Add(10 * time.Second)
	var d uint64
	for gcPercent() == base {
		if time.Now().After(deadline) {
			t.Fatalf("GC percent still %d after 10 s of busy batches", base)
		}
		d++
		e.publish(batch(d, "0a1b2c3d4e0000000001", msgEvent("x")))
		e.final()
		time.Sleep(5 * time.Millisecond)
	}
	if p := gcPercent(); p <= base || p > 400 {
		t.Fatalf("GC percent %d under load, want above GOGC %d and at most 400", p, base)
	}
	waitFor(t, 5*time.Second, "GOGC back once quiet", func() bool { return gcPercent() == base })
	if st := w.Stats(); st.Batches != d {
		t.Fatalf("worker took %d batches, want %d", st.Batches, d)
	}
}
