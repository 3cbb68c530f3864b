package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gatework/gatework/internal/testwait"
)

// TestIgnorePeerHeartbeats: a gateway with IgnorePeerHeartbeats follows
// no other gateway's heartbeats (its query replies name only itself)
// while the others still hear its own.
func TestIgnorePeerHeartbeats(t *testing.T) {
	nc := testBus(t)
	hb := 20 * time.Millisecond
	passive := startServer(t, nc, Config{HeartbeatInterval: hb, IgnorePeerHeartbeats: true,
		Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	follower := startServer(t, nc, Config{HeartbeatInterval: hb,
		Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	for _, s := range []*Server{passive, follower} {
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	}
	testwait.For(t, 5*time.Second, "the follower hears the passive gateway", func() bool {
		return slices.Contains(follower.peers(), passive.id)
	})
	// The follower has been sending heartbeats for a while: ten more
	// intervals and the passive gateway has still heard none.
	time.Sleep(10 * hb)
	if got := passive.peers(); !slices.Equal(got, []string{passive.id}) {
		t.Fatalf("passive gateway's peers %v, want only itself %s", got, passive.id)
	}
	if got := follower.peers(); len(got) != 2 {
		t.Fatalf("following gateway's peers %v, want both", got)
	}
}
