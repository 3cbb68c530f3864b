package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
)

// maxMessage is the listener's max_message: big enough for a payload in
// the 64-bit length form (over 65535 bytes), small enough to exceed fast.
const maxMessage = 128 << 10

// caseTimeout bounds one case: dial, handshake, every frame and the
// server's TCP close.
const caseTimeout = 5 * time.Second

// wsAddr and wszAddr are the addresses of the node's WebSocket listeners,
// the second with permessage-deflate, set by TestMain.
var wsAddr, wszAddr string

// TestMain starts one node with the echo app for every case, stops it at
// the end and then checks that no goroutine leaked.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := echo.Handlers()
	n, err := node.Start(ctx, node.Config{
		Logger: slog.New(slog.DiscardHandler),
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{
			Protocol:   "ws",
			Addr:       "127.0.0.1:0",
			MaxMessage: maxMessage,
		}, {
			Name:        "wsz",
			Protocol:    "ws",
			Addr:        "127.0.0.1:0",
			MaxMessage:  maxMessage,
			Compression: gateway.Compression{Enabled: true, MinSize: zMinSize},
		}}},
		Worker: node.WorkerConfig{Handlers: &h, App: "echo"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance: start node:", err)
		return 1
	}
	wsAddr, wszAddr = n.Addr("ws").String(), n.Addr("wsz").String()
	code := m.Run()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := n.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "conformance: node shutdown:", err)
		code = 1
	}
	// nbio starts a task pool when its package is initialised.
	if err := goleak.Find(goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3")); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "conformance: goroutines leaked:", err)
		code = 1
	}
	return code
}

// deadline returns the deadline of one case.
func deadline(t *testing.T) time.Time {
	t.Helper()
	d := time.Now().Add(caseTimeout)
	if td, ok := t.Deadline(); ok && td.Before(d) {
		d = td
	}
	return d
}
