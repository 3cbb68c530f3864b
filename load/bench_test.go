package load

import (
	"context"
	"testing"
	"time"
)

// The benchmarks below are the regression set: each iteration is one short
// run against an in-process node with the echo app (children as
// goroutines), reporting the workload's own figure as a custom metric.
// They are slow by nature; run them with -benchtime=1x (or 3x):
//
//	go test -run=^$ -bench=. -benchtime=1x ./load

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(1)
		for pb.Next() {
			h.Record(d)
			d = d*7 + 13
			if d > time.Hour {
				d = 1
			}
		}
	})
}

func benchRun(b *testing.B, cfg Config, metric func(*Result) (float64, string)) {
	tg := startNode(b)
	defer tg.stop()
	cfg.WSAddr, cfg.HTTPAddr, cfg.InProcess, cfg.MaxDuration = tg.ws, tg.http, true, time.Minute
	var sum float64
	var unit string
	for b.Loop() {
		r, err := Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		v, u := metric(r)
		sum, unit = sum+v, u
	}
	b.ReportMetric(sum/float64(b.N), unit)
}

func BenchmarkFanOut(b *testing.B) {
	benchRun(b, Config{Workload: FanOut, Conns: 1000, Procs: 1, Duration: time.Second, Rates: []int{100}},
		func(r *Result) (float64, string) { return r.MaxDeliveriesPerSec, "deliveries/s" })
}

func BenchmarkEcho(b *testing.B) {
	benchRun(b, Config{Workload: Echo, Conns: 500, Procs: 1, Duration: time.Second},
		func(r *Result) (float64, string) { return r.PerSec, "roundtrips/s" })
}

func BenchmarkChurn(b *testing.B) {
	benchRun(b, Config{Workload: Churn, Concurrency: 50, Procs: 1, Duration: time.Second},
		func(r *Result) (float64, string) { return r.PerSec, "conns/s" })
}
