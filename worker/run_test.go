package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// TestRunServesAndDrains: Run connects, reports ready, serves events, and
// once its context is done lets the batch in hand finish and acknowledge
// before it returns nil.
func TestRunServesAndDrains(t *testing.T) {
	e := newEnv(t)
	started, release := make(chan struct{}), make(chan struct{})
	ready := make(chan *worker.Worker, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- worker.Run(ctx, worker.RunConfig{
			Bus: e.e.ConnectOptions("run"),
			Handlers: worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) {
				close(started)
				<-release
				c.Send(msg)
			}},
			Worker:       worker.Config{Logger: discardLogger()},
			DrainTimeout: 10 * time.Second,
			Ready: func(w *worker.Worker, nc *nats.Conn) error {
				if !nc.IsConnected() {
					return errors.New("ready before the connection")
				}
				ready <- w
				return nil
			},
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	e.publish(batch(7, "c1", msgEvent("drained")))
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not run")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned with a batch in hand: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	a := e.final()
	if a.Delivery != 7 || len(a.Actions) != 1 || string(a.Actions[0].Data) != "drained" {
		t.Errorf("final ack %+v, want delivery 7 with the send", a)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v, want nil after a drain", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}

// TestRunErrors: Run returns the errors of its steps without serving.
func TestRunErrors(t *testing.T) {
	e := newEnv(t)
	refused := errors.New("not today")
	tests := []struct {
		name string
		cfg  worker.RunConfig
		want string
		is   error
	}{
		{name: "no URL", cfg: worker.RunConfig{Bus: bus.Options{}}, want: "no NATS URL"},
		{name: "bad prefix", cfg: worker.RunConfig{Bus: e.e.ConnectOptions("run"), Worker: worker.Config{Prefix: "a.>"}}, want: "prefix"},
		{name: "ready refuses", cfg: worker.RunConfig{Bus: e.e.ConnectOptions("run"),
			Ready: func(*worker.Worker, *nats.Conn) error { return refused }}, is: refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Worker.Logger = discardLogger()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := worker.Run(ctx, tt.cfg)
			switch {
			case err == nil:
				t.Fatal("Run: nil error")
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Errorf("Run: %v, want %v", err, tt.is)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Run: %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
