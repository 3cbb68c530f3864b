package load

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histSub is the number of linear sub-buckets per power of two: values are
// kept with a relative error below 1/histSub (1.6 %), as an HdrHistogram
// with two significant digits would.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// Histogram counts durations (nanoseconds) in log-linear buckets. Record is
// lock-free and safe for concurrent use; the other methods must not run
// concurrently with Record on the same Histogram (take a snapshot by
// swapping in a new Histogram first). Its JSON form (Counts, sparse) is how
// child processes hand their histograms to the parent, which merges them.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
}

// HistogramData is the JSON form of a Histogram: bucket index to count,
// only non-empty buckets.
type HistogramData map[int]uint64

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits // >= 1
	return e*histSub + int(v>>uint(e-1))&(histSub-1)
}

// histValue returns the highest value of bucket i.
func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i / histSub
	m := uint64(i%histSub) | histSub
	return (m+1)<<uint(e-1) - 1
}

// Record adds one observation; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))].Add(1)
}

// Data returns the non-empty buckets.
func (h *Histogram) Data() HistogramData {
	out := HistogramData{}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			out[i] = c
		}
	}
	return out
}

// Merge adds the buckets of d; indexes out of range are ignored.
func (h *Histogram) Merge(d HistogramData) {
	for i, c := range d {
		if i >= 0 && i < histBuckets {
			h.counts[i].Add(c)
		}
	}
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Quantile returns the smallest bucket bound below which at least q (0–1)
// of the observations lie; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	if want < 1 {
		want = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= want {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(histBuckets - 1))
}
