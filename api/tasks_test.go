package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// TestTaskSubmitterBounds: settings and payloads out of bounds are refused
// before anything is sent; Close fails the tasks still pending with
// ErrClosed; MaxPending bounds the tasks waiting for their results.
func TestTaskSubmitterBounds(t *testing.T) {
	b := newTestBus(t)
	// A task worker that accepts every task and never answers again.
	tw := b.conn(t, "taker")
	subj, _ := bus.NewSubjects("")
	sub, err := tw.QueueSubscribe(subj.Tasks(), subj.TaskQueue(), func(m *nats.Msg) {
		var task bus.Task
		if err := bus.DecodeTask(m.Data, &task); err != nil {
			t.Error(err)
			return
		}
		_ = tw.Publish(m.Reply, bus.AppendTaskReply(nil, &bus.TaskReply{ID: task.ID, Attempt: task.Attempt, Kind: bus.TaskAccepted, Worker: "tw"}))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}

	if _, err := b.client(t, api.Config{Tasks: api.TaskConfig{MaxAttempts: -1}}).SubmitTask(context.Background(), nil, 0, nil); !errors.Is(err, api.ErrInvalidArgument) {
		t.Errorf("negative MaxAttempts: %v, want ErrInvalidArgument", err)
	}
	c := b.client(t, api.Config{Tasks: api.TaskConfig{MaxPayload: 10, MaxPending: 2}})
	ctx := context.Background()
	tests := []struct {
		name    string
		payload []byte
		timeout time.Duration
		want    error
	}{
		{"too large", make([]byte, 11), 0, api.ErrTaskPayloadTooLarge},
		{"negative timeout", nil, -time.Second, api.ErrInvalidArgument},
		{"first", make([]byte, 10), 0, nil},
		{"second", nil, 0, nil},
		{"third: MaxPending", nil, 0, api.ErrTooManyTasks},
	}
	outcomes := make(chan api.TaskResult, 2)
	for _, tt := range tests {
		_, err := c.SubmitTask(ctx, tt.payload, tt.timeout, func(r api.TaskResult) { outcomes <- r })
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	waitFor(t, 5*time.Second, "accepted", func() bool { return c.TaskStats().Pending == 2 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := <-outcomes; !errors.Is(r.Err, api.ErrClosed) {
			t.Errorf("pending task at Close: %+v, want ErrClosed", r)
		}
	}
	if st := c.TaskStats(); st.Submitted != 2 || st.Failed != 2 {
		t.Errorf("stats %+v, want 2 submitted, 2 failed", st)
	}
	if _, err := c.SubmitTask(ctx, nil, 0, nil); !errors.Is(err, api.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
