package load

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
)

// TestIdleAnswersPingsWhileDialing: the idle workload's clients answer the
// gateway's pings from their handshake on, while the others still dial, so
// that none reaches the gateway's idle timeout during a long open (each
// child used to read its connections only once all were open: the first
// ones of a 400k run timed out).
func TestIdleAnswersPingsWhileDialing(t *testing.T) {
	h := echo.Handlers()
	n, err := node.Start(context.Background(), node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0",
			PingInterval: 250 * time.Millisecond, IdleTimeout: 1500 * time.Millisecond}}},
		Worker: node.WorkerConfig{Handlers: &h},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = n.Shutdown(context.Background()) }()
	r, err := Run(context.Background(), Config{Workload: Idle, WSAddr: n.Addr("ws").String(), PID: os.Getpid(),
		Conns: 3000, Procs: 1, InProcess: true, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.OpenSeconds < 3 {
		t.Skipf("the connections opened in %.2f s, within the idle timeout: nothing to see", r.OpenSeconds)
	}
	st := n.Gateway().Stats()
	if got := st.Closes[gateway.ReasonIdleTimeout.String()]; got != 0 || r.Connected != 3000 || r.Disconnected != 0 {
		t.Errorf("%d of 3000 connected in %.2f s; %d closed for idle_timeout, %d disconnected; want none",
			r.Connected, r.OpenSeconds, got, r.Disconnected)
	}
}
