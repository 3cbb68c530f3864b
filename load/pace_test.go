package load

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestPacerSlots: slots come one interval apart, and a stall is not made
// up with a burst (the slot after a late call is one interval after it).
func TestPacerSlots(t *testing.T) {
	p := newPacer(1000) // 1 ms apart
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		if got, want := p.slot(t0), t0.Add(time.Duration(i)*time.Millisecond); !got.Equal(want) {
			t.Fatalf("slot %d at %v, want %v", i, got.Sub(t0), want.Sub(t0))
		}
	}
	late := t0.Add(time.Second)
	if got := p.slot(late); !got.Equal(late) {
		t.Fatalf("slot after a stall at %v, want now (%v)", got.Sub(t0), late.Sub(t0))
	}
	if got, want := p.slot(late), late.Add(time.Millisecond); !got.Equal(want) {
		t.Fatalf("next slot at %v, want %v: a stall must not be made up with a burst", got.Sub(t0), want.Sub(t0))
	}
}

func TestDialers(t *testing.T) {
	for _, tt := range []struct {
		rate float64
		want int
	}{{0, dialParallel}, {1, 2}, {75, 8}, {200, 20}, {5000, dialParallel}} {
		if got := dialers(tt.rate); got != tt.want {
			t.Errorf("dialers(%v) = %d, want %d", tt.rate, got, tt.want)
		}
	}
}

// TestIdleOpenPaced: the idle workload opens at --rate, spread over the
// children, and every connection opens.
func TestIdleOpenPaced(t *testing.T) {
	tg := startBare(t)
	defer tg.stop()
	for _, tt := range []struct {
		rate     float64
		min, max time.Duration // the open time
	}{
		{200, 250 * time.Millisecond, 3 * time.Second}, // 80 at 200/s: 0.4 s
		{-1, 0, 3 * time.Second},                       // unpaced
	} {
		r, err := Run(context.Background(), Config{Workload: Idle, WSAddr: tg.ws, Bare: true, PID: os.Getpid(),
			Conns: 80, Procs: 2, InProcess: true, OpenRate: tt.rate,
			Duration: 50 * time.Millisecond, MaxDuration: 20 * time.Second})
		if err != nil {
			t.Fatalf("rate %v: %v", tt.rate, err)
		}
		open := time.Duration(r.OpenSeconds * float64(time.Second))
		if r.Connected != 80 || r.Failed != 0 || open < tt.min || open > tt.max {
			t.Errorf("rate %v: %d connected, %d failed, open in %v, want 80 in [%v, %v]", tt.rate, r.Connected, r.Failed, open, tt.min, tt.max)
		}
	}
}

// TestSrcIPs: the default spreads the connections over one source
// address per srcIPConns, counting on past 127.0.0.255.
func TestSrcIPs(t *testing.T) {
	for _, tt := range []struct {
		w          Workload
		conns, ips int
		want       int
		last       string
	}{
		{Idle, 1000, 0, 1, ""},
		{Idle, 100_000, 0, 50, "127.0.0.50"},
		{Idle, 1_000_000, 0, 500, "127.0.1.244"},
		{Idle, 1000, 300, 300, "127.0.1.44"},
		{Churn, 1000, 0, 8, "127.0.0.8"},
	} {
		c := Config{Workload: tt.w, WSAddr: "127.0.0.1:1", Conns: tt.conns, MaxConns: tt.conns, PerProc: tt.conns, SrcIPs: tt.ips}
		if err := c.defaults(); err != nil {
			t.Fatalf("%v %d: %v", tt.w, tt.conns, err)
		}
		ips := c.srcIPs()
		if c.SrcIPs != tt.want || (tt.last == "" && ips != nil) || (tt.last != "" && (len(ips) != tt.want || ips[len(ips)-1] != tt.last || ips[0] != "127.0.0.1")) {
			t.Errorf("%v %d conns, --src-ips %d: %d addresses %v..., want %d ending %q", tt.w, tt.conns, tt.ips, c.SrcIPs, ips[:min(len(ips), 3)], tt.want, tt.last)
		}
	}
	c := Config{Workload: Idle, WSAddr: "127.0.0.1:1", SrcIPs: maxSrcIPs + 1}
	if err := c.defaults(); err == nil {
		t.Errorf("--src-ips %d accepted", maxSrcIPs+1)
	}
}
