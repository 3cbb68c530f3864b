package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
)

// TestQuerySeesCallersUnGroup: a caller's query is handled by each
// gateway after the commands that caller published before it, so a count
// right after an UnGroup (which is published, not awaited) never sees the
// dissolved group. The query used to run on its own subscription,
// concurrently with the commands, and could count the group's members
// again (seen in the cluster suite).
func TestQuerySeesCallersUnGroup(t *testing.T) {
	tr := startTrio(t, gateway.Config{})
	gws := []string{tr.gws[0].ID(), tr.gws[1].ID(), tr.gws[2].ID()}
	slices.Sort(gws)
	waitFor(t, 5*time.Second, "all three gateways known", func() bool { return slices.Equal(tr.api.Members(), gws) })
	var ids []string
	for i := range 3 {
		for range 2 {
			ids = append(ids, tr.dial(t, i).id)
		}
	}
	ctx := t.Context()
	for round := range 30 {
		g := fmt.Sprintf("room%d", round)
		for _, id := range ids {
			if err := tr.api.JoinGroup(ctx, id, g); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := tr.api.GetClientCountByGroup(ctx, g); err != nil || n.Value != len(ids) {
			t.Fatalf("round %d: %d members before UnGroup (%v), want %d", round, n.Value, err, len(ids))
		}
		if err := tr.api.UnGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		n, err := tr.api.GetClientCountByGroup(ctx, g)
		if err != nil || n.Partial {
			t.Fatalf("round %d: count after UnGroup: %v (partial %v)", round, err, n.Partial)
		}
		if n.Value != 0 {
			t.Fatalf("round %d: %d members right after UnGroup, want 0", round, n.Value)
		}
	}
}
