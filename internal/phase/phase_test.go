package phase

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	at := func(ns int64) time.Time { return time.Unix(0, ns) }
	s := int64(time.Second)
	for _, tc := range []struct {
		name string
		now  time.Time
		d    time.Duration
		want time.Duration
	}{
		{"on a boundary", at(10 * s), time.Second, time.Second},
		{"just after a boundary", at(10*s + 1e6), time.Second, 999 * time.Millisecond},
		{"half way", at(10*s + 5e8), time.Second, 500 * time.Millisecond},
		{"just before a boundary: the next one", at(10*s - 1e6), time.Second, time.Second + time.Millisecond},
		{"a period that does not divide a second", at(10 * s), 300 * time.Millisecond, 200 * time.Millisecond},
		{"zero", at(10 * s), 0, 0},
		{"negative", at(10 * s), -time.Second, -time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := until(tc.now, tc.d)
			if got != tc.want {
				t.Fatalf("until(%v, %v) = %v, want %v", tc.now.UnixNano(), tc.d, got, tc.want)
			}
			if tc.d > 0 {
				if got < tc.d/2 || got >= tc.d*3/2 {
					t.Fatalf("until = %v, outside [d/2, 3d/2)", got)
				}
				if end := tc.now.Add(got).UnixNano(); end%int64(tc.d) != 0 {
					t.Fatalf("now + until = %d, not a multiple of %v", end, tc.d)
				}
			}
		})
	}
}

// TestTimersCoincide: two timers armed apart in time, with the same
// period, fire at the same boundary.
func TestTimersCoincide(t *testing.T) {
	const d = 50 * time.Millisecond
	time.Sleep(Until(d)) // just past a boundary: both arm before the next half period
	a := time.NewTimer(Until(d))
	time.Sleep(7 * time.Millisecond)
	b := time.NewTimer(Until(d))
	ta, tb := <-a.C, <-b.C
	if gap := tb.Sub(ta).Abs(); gap >= 7*time.Millisecond {
		t.Fatalf("timers armed 7ms apart fired %v apart, want together", gap)
	}
}

// TestUntilOffset: the boundaries move by the offset.
func TestUntilOffset(t *testing.T) {
	const d, off = 40 * time.Millisecond, 13 * time.Millisecond
	for range 5 {
		u := UntilOffset(d, off)
		end := time.Now().Add(u).UnixNano()
		if u < d/2 || u >= d*3/2 {
			t.Fatalf("UntilOffset = %v, outside [d/2, 3d/2)", u)
		}
		// Now moved between the two readings: allow 5ms of slack.
		if r := time.Duration((end - int64(off)) % int64(d)); r > 5*time.Millisecond && r < d-5*time.Millisecond {
			t.Fatalf("now + UntilOffset is %v past a boundary + offset, want about 0", r)
		}
		time.Sleep(3 * time.Millisecond)
	}
}
