package ops

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// apiBase returns the node's HTTP API base URL, from its "http:
// listening" log line.
func (n *node) apiBase() string {
	n.t.Helper()
	for _, l := range strings.Split(n.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "http: listening" {
			if base, _ := rec["console"].(string); base != "" {
				return base
			}
		}
	}
	n.t.Fatalf("no console URL in the logs:\n%s", n.logs.String())
	return ""
}

// post calls POST /api/<method> and decodes the answer's result.
func post(t *testing.T, c *http.Client, base, method, body string, result any) int {
	t.Helper()
	resp, err := c.Post(base+"api/"+method, "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	var out struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Errorf("%s: %s: %v", method, resp.Status, err)
		return resp.StatusCode
	}
	if result != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(out.Result, result); err != nil {
			t.Errorf("%s: result %s: %v", method, out.Result, err)
		}
	}
	return resp.StatusCode
}

// doneTasks reads the task log: the attempts and pids seen per payload.
func doneTasks(t *testing.T, path string) (done map[string]int, pids map[string]bool, retried int) {
	t.Helper()
	done, pids = map[string]int{}, map[string]bool{}
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		done[f[0]]++
		pids[f[1]] = true
		if f[2] != "1" {
			retried++
		}
	}
	return done, pids, retried
}

// TestTaskReloadOverProcesses: 1,000 tasks submitted through the HTTP API
// (POST /api/task) to 2 dedicated task processes of the master; a reload
// while they are in flight replaces the task processes, and every task
// still runs to the end (none lost), some on the old processes and some on
// the new. TaskWait through the HTTP API answers with the handler's result.
func TestTaskReloadOverProcesses(t *testing.T) {
	n := newNode(t)
	logPath := filepath.Join(t.TempDir(), "tasks.log")
	n.env = append(n.env, "GATEWORK_WORKER_TASK_PROCESSES=2", "GATEWORK_WORKER_TASK_CONCURRENCY=8",
		"OPSAPP_TASK_LOG="+logPath)
	n.start()
	base := n.apiBase()
	c := &http.Client{Timeout: 30 * time.Second}

	var res struct {
		Result *string `json:"result"`
		Error  *string `json:"error"`
	}
	if code := post(t, c, base, "taskWait", `{"payload":"hello","timeout_ms":5000}`, &res); code != http.StatusOK ||
		res.Result == nil || !strings.HasSuffix(*res.Result, ":hello") || res.Error != nil {
		t.Fatalf("taskWait: %d %+v", code, res)
	}
	st := n.status()
	oldTask := map[int]bool{}
	for _, p := range st.Processes {
		if p.Role == "task" {
			oldTask[p.PID] = true
		}
	}
	if len(oldTask) != 2 {
		t.Fatalf("task processes before the reload: %v, want 2", oldTask)
	}

	const total = 1000
	var wg sync.WaitGroup
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var id string
				if code := post(t, c, base, "task", fmt.Sprintf(`{"payload":"t%d"}`, i), &id); code != http.StatusOK || id == "" {
					t.Errorf("task %d: %d %q", i, code, id)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 20*time.Second, "tasks running", func() bool { d, _, _ := doneTasks(t, logPath); return len(d) >= 50 })
	out, errOut, code := n.run("reload")
	if code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: exit %d, %q %q", code, out, errOut)
	}
	waitFor(t, 60*time.Second, "every task done", func() bool {
		d, _, _ := doneTasks(t, logPath)
		return len(d) >= total+1
	})
	done, pids, retried := doneTasks(t, logPath)
	for i := range total {
		if done["t"+strconv.Itoa(i)] == 0 {
			t.Errorf("task t%d never ran to its end", i)
		}
	}
	st = n.status()
	newTask := map[int]bool{}
	var taken uint64
	for _, p := range st.Processes {
		if p.Role == "task" {
			newTask[p.PID] = true
			if p.Worker != nil {
				taken += p.Worker.Tasks.Taken
			}
		}
	}
	ranOld, ranNew := false, false
	for pid := range pids {
		id, _ := strconv.Atoi(pid)
		ranOld = ranOld || oldTask[id]
		ranNew = ranNew || newTask[id]
	}
	if len(newTask) != 2 || !ranOld || !ranNew || taken == 0 {
		t.Errorf("task processes after the reload %v (before %v); tasks ran on old ones: %v, new ones: %v; new ones took %d",
			newTask, oldTask, ranOld, ranNew, taken)
	}
	t.Logf("%d task runs for %d tasks, %d on a later attempt; pids %v", func() int {
		s := 0
		for _, v := range done {
			s += v
		}
		return s
	}(), len(done), retried, pids)
}

// TestTaskProcessKilled: a task process of the master is killed with
// SIGKILL while it runs tasks; every task submitted through the HTTP API
// still runs to its end, those that were in the killed process on their
// second attempt (the submitter publishes a task again when its task
// worker makes no progress), none is lost, the master starts a new task
// process, and the status table shows the task counters.
func TestTaskProcessKilled(t *testing.T) {
	n := newNode(t)
	logPath := filepath.Join(t.TempDir(), "tasks.log")
	n.env = append(n.env, "GATEWORK_WORKER_TASK_PROCESSES=2", "GATEWORK_WORKER_TASK_CONCURRENCY=8",
		"OPSAPP_TASK_LOG="+logPath)
	n.start()
	base := n.apiBase()
	c := &http.Client{Timeout: 30 * time.Second}
	taskPIDs := func() []int {
		var pids []int
		for _, p := range n.status().Processes {
			if p.Role == "task" {
				pids = append(pids, p.PID)
			}
		}
		return pids
	}
	before := taskPIDs()
	if len(before) != 2 {
		t.Fatalf("task processes: %v, want 2", before)
	}

	const total = 300
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var id string
				if code := post(t, c, base, "task", fmt.Sprintf(`{"payload":"t%d"}`, i), &id); code != http.StatusOK || id == "" {
					t.Errorf("task %d: %d %q", i, code, id)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 20*time.Second, "tasks running", func() bool { d, _, _ := doneTasks(t, logPath); return len(d) >= 30 })
	victim := before[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every task done", func() bool {
		d, _, _ := doneTasks(t, logPath)
		return len(d) >= total
	})
	done, pids, retried := doneTasks(t, logPath)
	for i := range total {
		if done["t"+strconv.Itoa(i)] == 0 {
			t.Errorf("task t%d never ran to its end", i)
		}
	}
	if retried == 0 {
		t.Error("no task ran on a second attempt: the killed process had none in hand, the test proves nothing")
	}
	if !pids[strconv.Itoa(victim)] {
		t.Errorf("the killed process %d ran no task before it died", victim)
	}
	waitFor(t, 20*time.Second, "a new task process", func() bool {
		after := taskPIDs()
		return len(after) == 2 && after[0] != victim && after[1] != victim
	})
	st := n.status()
	if st.Tasks == nil || st.Tasks.Lost != 0 || st.Tasks.Retried == 0 {
		t.Errorf("status tasks: %+v, want none lost and some retried", st.Tasks)
	}
	out, errOut, code := n.run("status")
	if code != 0 || !strings.Contains(out, "\ntasks: queued=") || !strings.Contains(out, " lost=0\n") {
		t.Errorf("status: exit %d, %q %q: no task counters", code, out, errOut)
	}
	t.Logf("%d tasks, %d runs on a later attempt", len(done), retried)
}
