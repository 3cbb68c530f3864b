package gateway

import "testing"

// TestUIDGates: the first acquire of a uid takes its gate, later ones wait
// in line; release hands the gate to the waiters in order, then frees it;
// gates of different uids are independent.
func TestUIDGates(t *testing.T) {
	var g uidGates
	a, b, c := &conn{seq: 1}, &conn{seq: 2}, &conn{seq: 3}
	if !g.acquire("u", a) || g.acquire("u", b) || g.acquire("u", c) {
		t.Fatal("want a to take u's gate, b and c to wait")
	}
	if !g.acquire("v", b) || g.held() != 2 {
		t.Fatalf("v's gate not independent: %d held", g.held())
	}
	for i, want := range []*conn{b, c, nil} {
		if got := g.release("u"); got != want {
			t.Fatalf("release %d: got %v, want %v", i, got, want)
		}
	}
	if g.held() != 1 || g.release("v") != nil || g.held() != 0 {
		t.Errorf("gates left held: %d", g.held())
	}
	if g.release("never") != nil {
		t.Error("release of a gate never taken handed it to someone")
	}
}
