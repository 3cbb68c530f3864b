package worker_test

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/gatework/gatework/worker"
)

// TestStatsJSON: a worker's stats (in `gatework status --json` and the
// master's stats exchange with its children) have snake_case keys, the
// state by name, and decode back to what was encoded.
func TestStatsJSON(t *testing.T) {
	in := worker.Stats{State: worker.StateDraining, Batches: 3, WebSocketConnects: 2, Busy: 1, MemoryReleases: 4}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	for k := range keys {
		if !snake.MatchString(k) {
			t.Errorf("key %q is not snake_case", k)
		}
	}
	for k, want := range map[string]any{"state": "draining", "websocket_connects": 2.0, "memory_releases": 4.0, "busy": 1.0} {
		if keys[k] != want {
			t.Errorf("%s = %v, want %v", k, keys[k], want)
		}
	}
	var out worker.Stats
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip: %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"state":"sleeping"}`), &out); err == nil {
		t.Error("an unknown state decoded")
	}
}
