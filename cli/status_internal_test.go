package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/worker"
)

// TestStatusTextTasks: the status table shows each task process's task
// counters and the node's totals (queued, in flight, done, failed,
// retried, lost), not only status --json.
func TestStatusTextTasks(t *testing.T) {
	ps := []processStatus{
		{Role: "master", PID: 1},
		{Role: "worker", PID: 2, Worker: &worker.Stats{}},
		{Role: "task", PID: 3, Worker: &worker.Stats{Tasks: worker.TaskStats{Queued: 2, Running: 8, Taken: 40, Done: 30, Retried: 3}}},
		{Role: "task", PID: 4, Worker: &worker.Stats{Tasks: worker.TaskStats{Running: 1, Taken: 9, Done: 7, Failed: 1, Retried: 2}}},
	}
	rep := &statusReport{Version: "v", App: "a", Processes: ps, Tasks: sumTasks(ps, api.TaskStats{Lost: 1})}
	var b bytes.Buffer
	printStatus(&b, rep)
	out := b.String()
	for _, want := range []string{
		"tasks: queued=2 in_flight=8 done=30 failed=0 retried=3 lost=0",
		"tasks: queued=0 in_flight=1 done=7 failed=1 retried=2 lost=0",
		"\ntasks: queued=2 in_flight=9 done=37 failed=1 retried=5 lost=1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status text lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "worker ") && strings.Contains(l, "tasks:") {
			t.Errorf("a worker that took no task shows task counters: %s", l)
		}
	}
}
