package load

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name      string
		values    []time.Duration
		q         float64
		want, tol time.Duration
	}{
		{"empty", nil, 0.5, 0, 0},
		{"small exact", []time.Duration{1, 2, 3, 4}, 0.5, 2, 0},
		{"one ms", []time.Duration{time.Millisecond}, 0.99, time.Millisecond, time.Millisecond / 50},
		{"spread", []time.Duration{time.Microsecond, time.Millisecond, time.Second}, 0.999, time.Second, time.Second / 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h, m Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			m.Merge(h.Data())
			got := m.Quantile(tt.q)
			if got < tt.want || got > tt.want+tt.tol {
				t.Fatalf("Quantile(%v) = %v, want %v (+%v)", tt.q, got, tt.want, tt.tol)
			}
		})
	}
	for v := uint64(0); v < 1<<20; v += 7 {
		if i := histIndex(v); histValue(i) < v || (i > 0 && histValue(i-1) >= v) {
			t.Fatalf("bucket %d of %d spans [%d, %d]", i, v, histValue(i-1)+1, histValue(i))
		}
	}
}
