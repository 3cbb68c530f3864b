package membership_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/membership"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// startBus starts an embedded NATS and returns two connections to it: one
// for the Membership and one for publishing heartbeats.
func startBus(t *testing.T) (sub, pub *nats.Conn) {
	t.Helper()
	e := testbus.Start(t, natsembed.Config{})
	return testbus.Conn(t, e, "membership-test"), testbus.Conn(t, e, "membership-test")
}

func newMembership(t *testing.T, nc *nats.Conn, cfg membership.Config) *membership.Tracker {
	t.Helper()
	m, err := membership.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The subscription is registered once the server answered a ping.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

func publishHB(t *testing.T, nc *nats.Conn, hb bus.Heartbeat) {
	t.Helper()
	if err := nc.Publish(bus.Subjects{Prefix: "gw"}.Heartbeat(), bus.AppendHeartbeat(nil, &hb)); err != nil {
		t.Fatal(err)
	}
}

func hasLive(m *membership.Tracker, gws ...string) func() bool {
	return func() bool { return slices.Equal(m.Live(), gws) }
}

const (
	gwA = "aaaaaaaaaa"
	gwB = "bbbbbbbbbb"
	gwC = "cccccccccc"
	gwD = "dddddddddd"
)

func TestMembershipHeartbeatExpiry(t *testing.T) {
	sub, pub := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now})

	publishHB(t, pub, bus.Heartbeat{Gateway: gwB, IntervalMs: 100})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA}) // no interval stated: 1s default
	waitFor(t, 5*time.Second, "two gateways", hasLive(m, gwA, gwB))

	clk.Advance(299 * time.Millisecond)
	if got := m.Live(); !slices.Equal(got, []string{gwA, gwB}) {
		t.Fatalf("before 3 intervals: Live = %v", got)
	}
	clk.Advance(time.Millisecond)
	if got := m.Live(); !slices.Equal(got, []string{gwA}) {
		t.Fatalf("after 3 stated intervals of b: Live = %v, want only a", got)
	}
	// A heartbeat renews the expiry.
	clk.Advance(2 * time.Second)
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA, IntervalMs: 1000})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwC, IntervalMs: 1000}) // sentinel: a's was handled first
	waitFor(t, 5*time.Second, "c", hasLive(m, gwA, gwC))
	clk.Advance(2999 * time.Millisecond)
	if got := m.Live(); !slices.Equal(got, []string{gwA, gwC}) {
		t.Fatalf("renewed: Live = %v", got)
	}
	clk.Advance(time.Millisecond)
	if got := m.Live(); len(got) != 0 {
		t.Fatalf("all expired: Live = %v", got)
	}
}

func TestMembershipLeaving(t *testing.T) {
	sub, pub := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now})

	publishHB(t, pub, bus.Heartbeat{Gateway: gwA})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwB})
	waitFor(t, 5*time.Second, "a and b", hasLive(m, gwA, gwB))

	publishHB(t, pub, bus.Heartbeat{Gateway: gwA, Leaving: true})
	waitFor(t, 5*time.Second, "a gone", hasLive(m, gwB))

	// A stale peer list does not bring a gateway that left back (and a
	// query does not wait for it)...
	if m.Observe(gwA) {
		t.Error("Observe of a gateway that left = true, want false")
	}
	if got := m.Live(); !slices.Equal(got, []string{gwB}) {
		t.Fatalf("observe after leaving: Live = %v", got)
	}
	// ...but its own heartbeat does.
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA})
	waitFor(t, 5*time.Second, "a back", hasLive(m, gwA, gwB))
}

// TestMembershipExpiredNotRevived: a peer that has not noticed yet that a
// gateway died (it still lists it) cannot bring it back; the gateway's
// own heartbeat can.
func TestMembershipExpiredNotRevived(t *testing.T) {
	sub, pub := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA, IntervalMs: 1000})
	waitFor(t, 5*time.Second, "a", hasLive(m, gwA))
	clk.Advance(membership.ExpiryIntervals * time.Second)
	if got := m.Live(); len(got) != 0 {
		t.Fatalf("expired: Live = %v", got)
	}
	if m.Observe(gwA) {
		t.Error("Observe right after expiry = true, want false")
	}
	if got := m.Live(); len(got) != 0 {
		t.Fatalf("observed right after expiry: Live = %v, want none", got)
	}
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA, IntervalMs: 1000})
	waitFor(t, 5*time.Second, "a heard again", hasLive(m, gwA))
	// Once the tombstone is over, a peer's word counts again.
	clk.Advance(membership.ExpiryIntervals * time.Second)
	_ = m.Live()
	clk.Advance(membership.ExpiryIntervals * time.Second)
	m.Observe(gwA)
	if got := m.Live(); !slices.Equal(got, []string{gwA}) {
		t.Fatalf("observed long after expiry: Live = %v", got)
	}
}

func TestMembershipObserve(t *testing.T) {
	sub, pub := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now, Interval: 100 * time.Millisecond})

	for _, bad := range []string{"", "short", "AAAAAAAAAA", "aaaaaaaaaaa", "a.b.c.d.e.", "gggggggggg"} {
		if m.Observe(bad) {
			t.Errorf("Observe(%q) = true", bad)
		}
	}
	if got := m.Live(); len(got) != 0 {
		t.Fatalf("malformed ids observed: %v", got)
	}
	if !m.Observe(gwB) || !m.Observe(gwA) {
		t.Error("Observe of new gateways = false")
	}
	if got := m.Live(); !slices.Equal(got, []string{gwA, gwB}) {
		t.Fatalf("Live = %v", got)
	}
	// Observing again does not extend; hearing does.
	clk.Advance(200 * time.Millisecond)
	m.Observe(gwA)
	publishHB(t, pub, bus.Heartbeat{Gateway: gwB, IntervalMs: 1000})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwC, IntervalMs: 1000})
	waitFor(t, 5*time.Second, "c heard", hasLive(m, gwA, gwB, gwC))
	clk.Advance(100 * time.Millisecond)
	if got := m.Live(); !slices.Equal(got, []string{gwB, gwC}) {
		t.Fatalf("observed a should have expired: Live = %v", got)
	}
}

func TestMembershipSelf(t *testing.T) {
	sub, pub := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now, Self: gwB})

	if got := m.Live(); !slices.Equal(got, []string{gwB}) {
		t.Fatalf("Live = %v, want self", got)
	}
	publishHB(t, pub, bus.Heartbeat{Gateway: gwB, Leaving: true})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA})
	waitFor(t, 5*time.Second, "a", hasLive(m, gwA, gwB))
	clk.Advance(time.Hour)
	if got := m.Live(); !slices.Equal(got, []string{gwB}) {
		t.Fatalf("Live = %v, want self only", got)
	}
}

func TestMembershipBound(t *testing.T) {
	sub, _ := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now, MaxGateways: 2})

	m.Observe(gwA)
	m.Heard(bus.Heartbeat{Gateway: gwB})
	m.Observe(gwC) // full: refused
	if got := m.Live(); !slices.Equal(got, []string{gwA, gwB}) {
		t.Fatalf("Live = %v", got)
	}
	m.Heard(bus.Heartbeat{Gateway: gwC}) // heard: evicts observed a
	if got := m.Live(); !slices.Equal(got, []string{gwB, gwC}) {
		t.Fatalf("Live = %v, want a evicted", got)
	}
	m.Heard(bus.Heartbeat{Gateway: gwD}) // all heard: refused
	if got := m.Live(); !slices.Equal(got, []string{gwB, gwC}) {
		t.Fatalf("Live = %v, want d refused", got)
	}
	clk.Advance(3 * time.Second) // everyone expires: room again
	m.Heard(bus.Heartbeat{Gateway: gwD})
	if got := m.Live(); !slices.Equal(got, []string{gwD}) {
		t.Fatalf("Live = %v, want d", got)
	}
}

func TestMembershipOnChange(t *testing.T) {
	sub, pub := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now})

	type change struct{ added, removed []string }
	var (
		mu      sync.Mutex
		changes []change
	)
	m.OnChange(func(added, removed []string) {
		mu.Lock()
		changes = append(changes, change{added, removed})
		mu.Unlock()
	})
	// collect returns the net effect of the changes reported so far.
	live := map[string]bool{}
	collect := func() []string {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range changes {
			for _, gw := range c.added {
				if live[gw] {
					t.Errorf("%s added twice", gw)
				}
				live[gw] = true
			}
			for _, gw := range c.removed {
				if !live[gw] {
					t.Errorf("%s removed while not live", gw)
				}
				delete(live, gw)
			}
		}
		changes = nil
		var out []string
		for gw := range live {
			out = append(out, gw)
		}
		slices.Sort(out)
		return out
	}
	reported := func(gws ...string) func() bool {
		return func() bool { return slices.Equal(collect(), gws) }
	}

	publishHB(t, pub, bus.Heartbeat{Gateway: gwA})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwB, IntervalMs: 100})
	waitFor(t, 5*time.Second, "a and b reported", reported(gwA, gwB))
	m.Observe(gwC)
	waitFor(t, 5*time.Second, "c reported", reported(gwA, gwB, gwC))
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA, Leaving: true})
	waitFor(t, 5*time.Second, "a removal reported", reported(gwB, gwC))
	clk.Advance(time.Second) // b expires (3×100ms); the sweeper notices
	waitFor(t, 5*time.Second, "b expiry reported", reported(gwC))
	clk.Advance(2 * time.Second)
	waitFor(t, 5*time.Second, "c expiry reported", reported())
}

func TestMembershipIgnoresGarbage(t *testing.T) {
	sub, pub := startBus(t)
	m := newMembership(t, sub, membership.Config{})
	subj := bus.Subjects{Prefix: "gw"}.Heartbeat()
	for _, data := range [][]byte{
		{0xff, 0xff, 0xff},
		bus.AppendHeartbeat(nil, &bus.Heartbeat{Gateway: "gw.*.>"}),
		bus.AppendHeartbeat(nil, &bus.Heartbeat{}),
		nil,
	} {
		if err := pub.Publish(subj, data); err != nil {
			t.Fatal(err)
		}
	}
	publishHB(t, pub, bus.Heartbeat{Gateway: gwA})
	waitFor(t, 5*time.Second, "a", hasLive(m, gwA))
}

func TestNewMembershipErrors(t *testing.T) {
	sub, _ := startBus(t)
	for _, tc := range []struct {
		name string
		nc   *nats.Conn
		cfg  membership.Config
	}{
		{"nil conn", nil, membership.Config{}},
		{"bad prefix", sub, membership.Config{Prefix: "a.*"}},
		{"bad self", sub, membership.Config{Self: "nope"}},
		{"negative interval", sub, membership.Config{Interval: -time.Second}},
		{"negative max", sub, membership.Config{MaxGateways: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := membership.New(tc.nc, tc.cfg); err == nil {
				m.Close()
				t.Fatal("no error")
			}
		})
	}
}

func TestMembershipCloseIdempotent(t *testing.T) {
	sub, _ := startBus(t)
	m, err := membership.New(sub, membership.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m.Observe(gwA) // after close: ignored, no panic
	m.Heard(bus.Heartbeat{Gateway: gwB})
	if got := m.Live(); len(got) != 0 {
		t.Fatalf("Live after close = %v", got)
	}
	// Closing after the connection is gone is not an error either.
	m2, err := membership.New(sub, membership.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMembershipListeners: Listeners is the union of the listener names
// the live gateways stated in their last heartbeat; it is not known while
// no live gateway stated any (none live, only observed ones, or gateways
// that state none), and names leave with their gateway.
func TestMembershipListeners(t *testing.T) {
	sub, _ := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now})
	type want struct {
		names []string
		known bool
	}
	check := func(step string, w want) {
		t.Helper()
		names, known := m.Listeners()
		if !slices.Equal(names, w.names) || known != w.known {
			t.Errorf("%s: Listeners = %v, %v; want %v, %v", step, names, known, w.names, w.known)
		}
	}
	check("nobody", want{nil, false})
	m.Observe(gwA)
	check("observed only", want{nil, false})
	m.Heard(bus.Heartbeat{Gateway: gwA})
	check("heard, no names", want{nil, false})
	m.Heard(bus.Heartbeat{Gateway: gwB, Listeners: []string{"ws", "devices"}})
	m.Heard(bus.Heartbeat{Gateway: gwC, Listeners: []string{"tcp", "ws", "", strings.Repeat("x", 300)}})
	check("two stated", want{[]string{"devices", "tcp", "ws"}, true})
	m.Heard(bus.Heartbeat{Gateway: gwB, Listeners: []string{"ws"}})
	check("b changed its names", want{[]string{"tcp", "ws"}, true})
	m.Heard(bus.Heartbeat{Gateway: gwC, Leaving: true})
	check("c left", want{[]string{"ws"}, true})
	clk.Advance(time.Hour)
	check("all expired", want{nil, false})
}

// TestMembershipOverloaded: a gateway's Overloaded heartbeat holds until
// its next heartbeat clears it or it expires.
func TestMembershipOverloaded(t *testing.T) {
	sub, _ := startBus(t)
	clk := newFakeClock()
	m := newMembership(t, sub, membership.Config{Now: clk.Now})
	steps := []struct {
		name    string
		hb      *bus.Heartbeat
		advance time.Duration
		want    bool
	}{
		{name: "none heard", want: false},
		{name: "a fine", hb: &bus.Heartbeat{Gateway: gwA, IntervalMs: 100}, want: false},
		{name: "b overloaded", hb: &bus.Heartbeat{Gateway: gwB, IntervalMs: 100, Overloaded: true}, want: true},
		{name: "a still fine", hb: &bus.Heartbeat{Gateway: gwA, IntervalMs: 100}, want: true},
		{name: "b cleared", hb: &bus.Heartbeat{Gateway: gwB, IntervalMs: 100}, want: false},
		{name: "b overloaded again", hb: &bus.Heartbeat{Gateway: gwB, IntervalMs: 100, Overloaded: true}, want: true},
		{name: "b expired", advance: 300 * time.Millisecond, want: false},
		{name: "c overloaded, leaving", hb: &bus.Heartbeat{Gateway: gwC, Overloaded: true, Leaving: true}, want: false},
	}
	for _, st := range steps {
		if st.hb != nil {
			m.Heard(*st.hb)
		}
		clk.Advance(st.advance)
		if got := m.Overloaded(); got != st.want {
			t.Fatalf("%s: Overloaded = %v, want %v", st.name, got, st.want)
		}
	}
}

// TestMembershipPassive: a passive Tracker hears no heartbeat, knows
// Self and what it is told (Heard, Observe), and closes cleanly.
func TestMembershipPassive(t *testing.T) {
	sub, pub := startBus(t)
	follower := newMembership(t, sub, membership.Config{})
	passive := newMembership(t, sub, membership.Config{Self: gwA, Passive: true})
	publishHB(t, pub, bus.Heartbeat{Gateway: gwB})
	waitFor(t, 5*time.Second, "the follower hears b", hasLive(follower, gwB))
	if got := passive.Live(); !slices.Equal(got, []string{gwA}) {
		t.Fatalf("passive Live = %v, want only self", got)
	}
	if !passive.Observe(gwC) {
		t.Fatal("passive tracker refused an observed gateway")
	}
	passive.Heard(bus.Heartbeat{Gateway: gwD})
	if got := passive.Live(); !slices.Equal(got, []string{gwA, gwC, gwD}) {
		t.Fatalf("passive Live = %v, want self and the gateways it was told of", got)
	}
}
