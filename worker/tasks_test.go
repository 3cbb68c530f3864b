package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/worker"
)

// newTaskEnv is newEnv on an embedded NATS that listens on 127.0.0.1, so
// that workers connect with the worker role's permissions.
func newTaskEnv(t *testing.T) *env {
	t.Helper()
	e, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	subj, _ := bus.NewSubjects("")
	return &env{t: t, e: e, subj: subj}
}

// taskWorker starts a worker with the worker role's permissions and a real
// API client (the task submitter) on its own connection. The worker is
// stopped before the client is closed and the connection.
func (e *env) taskWorker(cfg worker.Config, tc api.TaskConfig, h worker.Handlers) (*worker.Worker, *nats.Conn) {
	e.t.Helper()
	nc, err := bus.Connect(e.e.WorkerOptions("worker"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	a, err := api.New(nc, api.Config{Tasks: tc})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = a.Close() })
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	w, err := worker.New(nc, a, cfg, h)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
	return w, nc
}

// echoTask returns its payload, "fail" as an error, and sleeps for
// payloads starting with "slow".
func echoTask(tc *worker.TaskContext, p []byte) ([]byte, error) {
	switch {
	case string(p) == "fail":
		return nil, errors.New("it failed")
	case bytes.HasPrefix(p, []byte("slow")):
		select {
		case <-time.After(2 * time.Second):
		case <-tc.Context().Done():
		}
	}
	return append([]byte(tc.Worker().ID()+":"), p...), nil
}

func TestTaskWait(t *testing.T) {
	e := newTaskEnv(t)
	tw, _ := e.taskWorker(worker.Config{ID: "t1", Kind: worker.KindTask}, api.TaskConfig{}, worker.Handlers{OnTask: echoTask})
	sw, _ := e.taskWorker(worker.Config{ID: "s1", NoTasks: true}, api.TaskConfig{}, worker.Handlers{OnTask: echoTask})
	ctx := context.Background()
	tests := []struct {
		payload string
		want    string
		wantErr bool
	}{
		{"hello", "t1:hello", false},
		{"", "t1:", false},
		{"fail", "", true},
	}
	for _, tt := range tests {
		got, err := sw.TaskWait(ctx, []byte(tt.payload), 5*time.Second)
		var te *api.TaskError
		if tt.wantErr != (err != nil) || (err != nil && (!errors.As(err, &te) || te.Message != "it failed" || te.Worker != "t1")) {
			t.Fatalf("TaskWait(%q) = %q, %v", tt.payload, got, err)
		}
		if string(got) != tt.want {
			t.Errorf("TaskWait(%q) = %q, want %q", tt.payload, got, tt.want)
		}
	}
	if st := tw.Stats().Tasks; st.Taken != 3 || st.Done != 2 || st.Failed != 1 {
		t.Errorf("task worker stats %+v, want 3 taken, 2 done, 1 failed", st)
	}
	if st := sw.Stats().Tasks; st.Taken != 0 || st.Submitted != 3 {
		t.Errorf("submitter (NoTasks) stats %+v, want 0 taken and 3 submitted", st)
	}
}

func TestTaskFireAndForgetOnFinish(t *testing.T) {
	e := newTaskEnv(t)
	e.taskWorker(worker.Config{ID: "t1", Kind: worker.KindTask}, api.TaskConfig{}, worker.Handlers{OnTask: echoTask})
	got := make(chan worker.TaskResult, 2)
	sw, _ := e.taskWorker(worker.Config{ID: "s1"}, api.TaskConfig{}, worker.Handlers{
		OnFinish: func(_ *worker.Worker, r worker.TaskResult) { got <- r },
	})
	id, err := sw.Task(context.Background(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.ID != id || string(r.Result) != "t1:x" || r.Err != nil || r.Attempts != 1 {
			t.Errorf("OnFinish got %+v, want id %s result t1:x", r, id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OnFinish")
	}
}

func TestTaskWaitMultiOneSlow(t *testing.T) {
	e := newTaskEnv(t)
	e.taskWorker(worker.Config{ID: "t1", Kind: worker.KindTask}, api.TaskConfig{}, worker.Handlers{OnTask: echoTask})
	sw, _ := e.taskWorker(worker.Config{ID: "s1"}, api.TaskConfig{}, worker.Handlers{})
	payloads := [][]byte{[]byte("a"), []byte("slow"), []byte("c")}
	start := time.Now()
	rs := sw.TaskWaitMulti(context.Background(), payloads, 400*time.Millisecond)
	if d := time.Since(start); d < 400*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("TaskWaitMulti took %v, want about its 400ms timeout", d)
	}
	if len(rs) != 3 || string(rs[0].Result) != "t1:a" || rs[0].Err != nil || string(rs[2].Result) != "t1:c" || rs[2].Err != nil {
		t.Fatalf("results %+v", rs)
	}
	if !errors.Is(rs[1].Err, api.ErrTaskTimeout) || rs[1].Result != nil {
		t.Errorf("slow task: %+v, want ErrTaskTimeout", rs[1])
	}
	res, errs := sw.TaskCo(context.Background(), payloads, 400*time.Millisecond)
	if string(res[0]) != "t1:a" || errs[0] != nil || !errors.Is(errs[1], api.ErrTaskTimeout) || string(res[2]) != "t1:c" {
		t.Errorf("TaskCo = %q, %v", res, errs)
	}
}

func TestTaskWaitNoTaskWorker(t *testing.T) {
	e := newTaskEnv(t)
	sw, _ := e.taskWorker(worker.Config{ID: "s1"}, api.TaskConfig{RetryInterval: 100 * time.Millisecond}, worker.Handlers{})
	start := time.Now()
	_, err := sw.TaskWait(context.Background(), []byte("x"), 500*time.Millisecond)
	if d := time.Since(start); !errors.Is(err, api.ErrNoTaskWorker) || d < 500*time.Millisecond || d > 2*time.Second {
		t.Fatalf("TaskWait with no task worker: %v after %v, want ErrNoTaskWorker after its 500ms timeout", err, d)
	}
	// A task worker that comes up while a task waits gets it (the
	// submitter publishes it again every RetryInterval).
	done := make(chan error, 1)
	go func() {
		_, err := sw.TaskWait(context.Background(), []byte("late"), 5*time.Second)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	e.taskWorker(worker.Config{ID: "t1", Kind: worker.KindTask}, api.TaskConfig{}, worker.Handlers{OnTask: echoTask})
	if err := <-done; err != nil {
		t.Errorf("task waiting for a task worker: %v", err)
	}
}

func TestTaskPayloadTooLarge(t *testing.T) {
	e := newTaskEnv(t)
	var ran atomic.Int32
	e.taskWorker(worker.Config{ID: "t1", Kind: worker.KindTask}, api.TaskConfig{}, worker.Handlers{
		OnTask: func(*worker.TaskContext, []byte) ([]byte, error) { ran.Add(1); return nil, nil },
	})
	sw, _ := e.taskWorker(worker.Config{ID: "s1"}, api.TaskConfig{MaxPayload: 1000}, worker.Handlers{})
	big := make([]byte, 1001)
	if _, err := sw.Task(context.Background(), big); !errors.Is(err, api.ErrTaskPayloadTooLarge) {
		t.Errorf("Task of 1001 bytes: %v, want ErrTaskPayloadTooLarge", err)
	}
	if _, err := sw.TaskWait(context.Background(), big, time.Second); !errors.Is(err, api.ErrTaskPayloadTooLarge) {
		t.Errorf("TaskWait of 1001 bytes: %v, want ErrTaskPayloadTooLarge", err)
	}
	if _, err := sw.TaskWait(context.Background(), big[:1000], 5*time.Second); err != nil {
		t.Errorf("TaskWait of 1000 bytes: %v", err)
	}
	if n := ran.Load(); n != 1 {
		t.Errorf("task handler ran %d times, want 1 (the too-large ones never sent)", n)
	}
}

// TestTaskBusyFlowControl: a task worker with room for two tasks refuses
// the others as busy; their submitter publishes them again, and every task
// runs, never more than the bound at once.
func TestTaskBusyFlowControl(t *testing.T) {
	e := newTaskEnv(t)
	var now, peak atomic.Int32
	tw, _ := e.taskWorker(worker.Config{ID: "t1", Kind: worker.KindTask, TaskConcurrency: 1, TaskBacklog: 1}, api.TaskConfig{},
		worker.Handlers{OnTask: func(_ *worker.TaskContext, p []byte) ([]byte, error) {
			n := now.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			now.Add(-1)
			return p, nil
		}})
	sw, _ := e.taskWorker(worker.Config{ID: "s1"}, api.TaskConfig{}, worker.Handlers{})
	payloads := make([][]byte, 20)
	for i := range payloads {
		payloads[i] = []byte(strconv.Itoa(i))
	}
	rs := sw.TaskWaitMulti(context.Background(), payloads, 10*time.Second)
	for i, r := range rs {
		if r.Err != nil || string(r.Result) != strconv.Itoa(i) {
			t.Errorf("task %d: %+v", i, r)
		}
	}
	st := tw.Stats().Tasks
	if st.Refused == 0 || st.Done != 20 {
		t.Errorf("stats %+v: want some refused and 20 done", st)
	}
	if peak.Load() != 1 {
		t.Errorf("%d tasks ran at once, want 1 (TaskConcurrency)", peak.Load())
	}
}

// TestTaskRetriedWhenWorkerLost: the task worker running a task dies (its
// connection is gone: no progress, no result); the submitter publishes the
// task again as attempt 2, which another task worker runs. With
// MaxAttempts 1 the task is given up with ErrTaskLost instead.
func TestTaskRetriedWhenWorkerLost(t *testing.T) {
	for _, tt := range []struct {
		maxAttempts int
		wantErr     error
	}{{2, nil}, {1, api.ErrTaskLost}} {
		t.Run(fmt.Sprint("max_attempts=", tt.maxAttempts), func(t *testing.T) {
			e := newTaskEnv(t)
			started := make(chan struct{}, 1)
			var doomed atomic.Pointer[nats.Conn]
			_, nc := e.taskWorker(worker.Config{ID: "doomed", Kind: worker.KindTask}, api.TaskConfig{},
				worker.Handlers{OnTask: func(tc *worker.TaskContext, p []byte) ([]byte, error) {
					// The crash, as soon as the task starts: the submitter
					// must know it was taken, or attempt 1 would run again.
					doomed.Load().Close()
					started <- struct{}{}
					select { // until Stop gives up on it, after the test
					case <-tc.Context().Done():
					case <-time.After(1500 * time.Millisecond):
					}
					return nil, errors.New("never reported")
				}})
			doomed.Store(nc)
			sw, _ := e.taskWorker(worker.Config{ID: "s1"}, api.TaskConfig{MaxAttempts: tt.maxAttempts, LostAfter: 300 * time.Millisecond},
				worker.Handlers{})
			type out struct {
				b   []byte
				err error
			}
			done := make(chan out, 1)
			go func() {
				b, err := sw.TaskWait(context.Background(), []byte("job"), 10*time.Second)
				done <- out{b, err}
			}()
			<-started
			var attempt atomic.Int32
			e.taskWorker(worker.Config{ID: "t2", Kind: worker.KindTask}, api.TaskConfig{}, worker.Handlers{
				OnTask: func(tc *worker.TaskContext, p []byte) ([]byte, error) {
					attempt.Store(int32(tc.Attempt()))
					return []byte("ok"), nil
				}})
			o := <-done
			if tt.wantErr != nil {
				if !errors.Is(o.err, tt.wantErr) || attempt.Load() != 0 {
					t.Errorf("got %q, %v (second worker saw attempt %d), want %v and no second run", o.b, o.err, attempt.Load(), tt.wantErr)
				}
				return
			}
			if o.err != nil || string(o.b) != "ok" || attempt.Load() != 2 {
				t.Errorf("got %q, %v on attempt %d, want ok on attempt 2", o.b, o.err, attempt.Load())
			}
			if st := sw.API().(*api.Client).TaskStats(); st.Retried != 1 {
				t.Errorf("submitter stats %+v, want 1 retried", st)
			}
		})
	}
}

// TestTaskReloadLosesNone: 1,000 tasks in flight while the task workers are
// replaced (a new one starts, the old ones stop with a short deadline, as
// a reload does): every task gets its result, none is lost; tasks the old
// workers abandoned run again with Attempt 2.
func TestTaskReloadLosesNone(t *testing.T) {
	e := newTaskEnv(t)
	var mu sync.Mutex
	ran := map[string]int{}
	h := worker.Handlers{OnTask: func(tc *worker.TaskContext, p []byte) ([]byte, error) {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-tc.Context().Done():
			return nil, tc.Context().Err()
		}
		mu.Lock()
		ran[string(p)]++
		mu.Unlock()
		return p, nil
	}}
	cfg := worker.Config{Kind: worker.KindTask, TaskConcurrency: 50}
	oldA, _ := e.taskWorker(cfg, api.TaskConfig{}, h)
	oldB, _ := e.taskWorker(cfg, api.TaskConfig{}, h)
	sw, _ := e.taskWorker(worker.Config{ID: "s1"}, api.TaskConfig{LostAfter: time.Second}, worker.Handlers{})
	const n = 1000
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = []byte(strconv.Itoa(i))
	}
	res := make(chan []worker.TaskResult, 1)
	go func() { res <- sw.TaskWaitMulti(context.Background(), payloads, 30*time.Second) }()
	waitFor(t, 5*time.Second, "tasks in flight", func() bool { return oldA.Stats().Tasks.Running > 0 })
	e.taskWorker(cfg, api.TaskConfig{}, h) // the new generation
	for _, w := range []*worker.Worker{oldA, oldB} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_ = w.Stop(ctx) // some tasks abandoned: their deadline is this short
		cancel()
	}
	rs := <-res
	for i, r := range rs {
		if r.Err != nil || string(r.Result) != strconv.Itoa(i) {
			t.Fatalf("task %d: %+v", i, r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if ran[strconv.Itoa(i)] == 0 {
			t.Errorf("task %d never completed a run", i)
		}
	}
	st := sw.API().(*api.Client).TaskStats()
	t.Logf("submitter %+v; old workers: %+v / %+v", st, oldA.Stats().Tasks, oldB.Stats().Tasks)
	if st.Finished != n || st.Failed != 0 {
		t.Errorf("submitter stats %+v, want %d finished, 0 failed", st, n)
	}
}

// TestWorkerMessages: every worker lists the others; SendMessageToAll
// reaches every worker process exactly once; SendMessage reaches the one
// named; an unknown id is a clear error.
func TestWorkerMessages(t *testing.T) {
	e := newTaskEnv(t)
	type rcv struct{ to, from, payload string }
	var mu sync.Mutex
	var got []rcv
	var ws []*worker.Worker
	for i, kind := range []worker.Kind{worker.KindEvent, worker.KindEvent, worker.KindTask} {
		id := fmt.Sprintf("w%d", i)
		w, _ := e.taskWorker(worker.Config{ID: id, Kind: kind}, api.TaskConfig{}, worker.Handlers{
			OnTask: echoTask,
			OnWorkerMessage: func(w *worker.Worker, from string, p []byte) {
				mu.Lock()
				got = append(got, rcv{w.ID(), from, string(p)})
				mu.Unlock()
			},
		})
		ws = append(ws, w)
	}
	for _, w := range ws {
		waitFor(t, 5*time.Second, "the worker list", func() bool { return len(w.GetWorkerList()) == 3 })
	}
	list := ws[0].GetWorkerList()
	for i, wi := range list {
		wantKind := worker.KindEvent
		if i == 2 {
			wantKind = worker.KindTask
		}
		if wi.ID != fmt.Sprintf("w%d", i) || wi.Kind != wantKind || wi.PID == 0 || wi.Started.IsZero() {
			t.Errorf("list[%d] = %+v", i, wi)
		}
	}
	ctx := context.Background()
	for _, w := range ws {
		if err := w.SendMessageToAll(ctx, []byte("all from "+w.ID())); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws[0].SendMessage(ctx, "w2", []byte("direct")); err != nil {
		t.Fatal(err)
	}
	err := ws[0].SendMessage(ctx, "w9", []byte("x"))
	if !errors.Is(err, worker.ErrUnknownWorker) {
		t.Errorf("SendMessage to w9: %v, want ErrUnknownWorker", err)
	}
	waitFor(t, 5*time.Second, "10 messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 10 })
	time.Sleep(100 * time.Millisecond) // no more should come
	mu.Lock()
	defer mu.Unlock()
	count := map[rcv]int{}
	for _, r := range got {
		count[r]++
	}
	for _, to := range ws {
		for _, from := range ws {
			if c := count[rcv{to.ID(), from.ID(), "all from " + from.ID()}]; c != 1 {
				t.Errorf("%s got %s's broadcast %d times, want exactly once", to.ID(), from.ID(), c)
			}
		}
	}
	if c := count[rcv{"w2", "w0", "direct"}]; c != 1 || len(got) != 10 {
		t.Errorf("direct message seen %d times, %d messages in all (want 1, 10): %v", c, len(got), got)
	}
}
