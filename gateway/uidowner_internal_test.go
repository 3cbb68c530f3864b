package gateway

import (
	"fmt"
	"testing"
	"time"
)

// TestUIDOwner: the owner's table grants a uid's gate to one gateway at a
// time, in the order they asked, hands it on at a release or when the
// holder's lease ends, keeps a renewed hold, lets a holder of a previous
// owner renew first during the grace, and forgets free gates.
func TestUIDOwner(t *testing.T) {
	const lease = time.Second
	a, b, c := gateRef{"ga", 1}, gateRef{"gb", 1}, gateRef{"gc", 7}
	type step struct {
		op      string // acquire, renew, release, expire, grace
		ref     gateRef
		at      time.Duration
		want    bool     // acquire/renew: holds now; release: a grant follows
		granted []string // release/expire: the gateways granted
	}
	tests := []struct {
		name  string
		steps []step
		size  int
	}{
		{"free gate granted, then in line", []step{
			{op: "acquire", ref: a, want: true},
			{op: "acquire", ref: b},
			{op: "acquire", ref: c},
			{op: "release", ref: a, want: true, granted: []string{"gb"}},
			{op: "release", ref: b, want: true, granted: []string{"gc"}},
			{op: "release", ref: c},
		}, 0},
		{"repeated acquire is a renewal, not a second place", []step{
			{op: "acquire", ref: a, want: true},
			{op: "acquire", ref: b},
			{op: "acquire", ref: b},
			{op: "acquire", ref: a, want: true},
			{op: "release", ref: a, want: true, granted: []string{"gb"}},
			{op: "release", ref: b},
		}, 0},
		{"waiter calls off its wait", []step{
			{op: "acquire", ref: a, want: true},
			{op: "acquire", ref: b},
			{op: "release", ref: b},
			{op: "release", ref: a},
		}, 0},
		{"dead holder's lease ends: next in line", []step{
			{op: "acquire", ref: a, want: true},
			{op: "acquire", ref: b, at: 900 * time.Millisecond},
			{op: "expire", at: 1100 * time.Millisecond, granted: []string{"gb"}},
			{op: "release", ref: a, at: 1200 * time.Millisecond}, // too late: nothing
			{op: "release", ref: b, at: 1200 * time.Millisecond},
		}, 0},
		{"renewed hold survives its first lease", []step{
			{op: "acquire", ref: a, want: true},
			{op: "acquire", ref: b, at: 100 * time.Millisecond},
			{op: "renew", ref: a, at: 800 * time.Millisecond, want: true},
			{op: "acquire", ref: b, at: 1000 * time.Millisecond},
			{op: "expire", at: 1500 * time.Millisecond},
			{op: "expire", at: 1900 * time.Millisecond, granted: []string{"gb"}},
		}, 1},
		{"dead waiter skipped", []step{
			{op: "acquire", ref: a, want: true},
			{op: "acquire", ref: b},
			{op: "acquire", ref: c, at: 500 * time.Millisecond},
			{op: "renew", ref: a, at: 900 * time.Millisecond, want: true},
			{op: "release", ref: a, at: 1200 * time.Millisecond, want: true, granted: []string{"gc"}},
		}, 1},
		{"grace: a new waiter waits, a previous holder renews first", []step{
			{op: "grace", at: 500 * time.Millisecond},
			{op: "acquire", ref: b},
			{op: "renew", ref: a, at: 100 * time.Millisecond, want: true},
			{op: "release", ref: a, at: 200 * time.Millisecond, want: true, granted: []string{"gb"}},
		}, 1},
		{"grace ends: the waiter gets the unclaimed gate", []step{
			{op: "grace", at: 500 * time.Millisecond},
			{op: "acquire", ref: b},
			{op: "expire", at: 300 * time.Millisecond},
			{op: "acquire", ref: b, at: 400 * time.Millisecond},
			{op: "expire", at: 600 * time.Millisecond, granted: []string{"gb"}},
		}, 1},
		{"renewal of an unknown hold while another holds: first in line", []step{
			{op: "acquire", ref: b, want: true},
			{op: "acquire", ref: c},
			{op: "renew", ref: a},
			{op: "release", ref: b, want: true, granted: []string{"ga"}},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o uidOwner
			for i, st := range tt.steps {
				now := int64(st.at)
				var got bool
				var granted []string
				switch st.op {
				case "acquire", "renew":
					got = o.acquire("u", st.ref, st.op == "renew", lease, now)
				case "release":
					gr, ok := o.release("u", st.ref, now)
					got = ok
					if ok {
						granted = append(granted, gr.ref.gw)
					}
				case "expire":
					for _, gr := range o.expire(now) {
						granted = append(granted, gr.ref.gw)
					}
					got = st.want
				case "grace":
					o.grace(now)
					got = st.want
				}
				if got != st.want || fmt.Sprint(granted) != fmt.Sprint(st.granted) {
					t.Fatalf("step %d (%s %v at %v): got %v granted %v, want %v granted %v",
						i, st.op, st.ref, st.at, got, granted, st.want, st.granted)
				}
			}
			if n := o.size(); n != tt.size {
				t.Errorf("gates left: %d, want %d", n, tt.size)
			}
		})
	}
}

// TestOwnerOf: every gateway list order gives the same owner, the owners
// spread over the gateways, and a gateway leaving moves only its uids.
func TestOwnerOf(t *testing.T) {
	live := []string{"g1", "g2", "g3", "g4"}
	count := map[string]int{}
	const uids = 4000
	for i := range uids {
		uid := fmt.Sprint("user", i)
		o := ownerOf(uid, live)
		if r := ownerOf(uid, []string{"g4", "g3", "g2", "g1"}); r != o {
			t.Fatalf("%s: owner %s or %s by list order", uid, o, r)
		}
		count[o]++
		if after := ownerOf(uid, []string{"g1", "g2", "g4"}); o != "g3" && after != o {
			t.Fatalf("%s moved from %s to %s when g3 left", uid, o, after)
		}
	}
	for _, gw := range live {
		if n := count[gw]; n < uids/4*8/10 || n > uids/4*12/10 {
			t.Errorf("%s owns %d of %d uids: not spread", gw, n, uids)
		}
	}
	if got := ownerOf("u", nil); got != "" {
		t.Errorf("owner with no gateway: %q", got)
	}
}
