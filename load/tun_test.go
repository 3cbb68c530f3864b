package load

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/netnstest"
	"github.com/gatework/gatework/node"
)

// TestIdleTUN runs the idle workload with --tun against a gatework node
// listening on the TUN device's address, in a namespace of its own: every
// client opens, is pinged and answers through the hold, and closes in
// order at the end; the report has the targets', the client's and the
// kernel's figures.
func TestIdleTUN(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	n := tunNode(t)
	defer func() { _ = n.Shutdown(context.Background()) }()
	const conns = 200
	r, err := Run(context.Background(), Config{Workload: Idle, TUN: "gwl0", WSAddr: n.Addr("ws").String(),
		HTTPAddr: n.HTTPAddr().String(), Conns: conns, Duration: time.Second, MaxDuration: 30 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Connected != conns || r.Failed != 0 || r.Disconnected != 0 {
		t.Fatalf("connected %d, failed %d, disconnected %d", r.Connected, r.Failed, r.Disconnected)
	}
	if r.TUN == nil || r.TUN.AtHoldEnd.Pings < conns || r.TUN.Stats.Closed != conns {
		t.Fatalf("tun result %+v", r.TUN)
	}
	if r.PID != os.Getpid() || r.ClientRSSKiB == 0 || r.SlabAfterKiB == 0 || r.OpenRate <= 0 {
		t.Fatalf("report: pid %d (want this process, the node's), client RSS %d, slab %d, open rate %.0f",
			r.PID, r.ClientRSSKiB, r.SlabAfterKiB, r.OpenRate)
	}
	if _, err := Run(context.Background(), Config{Workload: Echo, TUN: "gwl0", WSAddr: n.Addr("ws").String()}); err == nil {
		t.Fatal("--tun accepted for the echo workload")
	}
}

// tunNode makes the TUN device gwl0 (10.77.0.1/8, up: RunTUN opens it,
// and the node must listen on its address first) in the test's own
// network namespace and starts an echo node listening on it with fast
// pings.
func tunNode(t *testing.T) *node.Node {
	t.Helper()
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"tuntap", "add", "dev", "gwl0", "mode", "tun"},
		{"addr", "add", "10.77.0.1/8", "dev", "gwl0"},
		{"link", "set", "gwl0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("ip %v refused: %v\n%s", args, err, out)
		}
	}
	h := echo.Handlers()
	n, err := node.Start(context.Background(), node.Config{
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "10.77.0.1:0",
			PingInterval: 100 * time.Millisecond, IdleTimeout: 2 * time.Second}}},
		HTTP:   node.HTTPConfig{Addr: "127.0.0.1:0"},
		Worker: node.WorkerConfig{Handlers: &h},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	return n
}

// TestIdleTUNStop: with --stop-cmd the server is stopped while every
// client is connected; each client gets the server's close frame (1001),
// answers it, and is gone when the report is made; nothing counts as an
// unexpected close of the hold. The command signals the test through a
// file, the test shuts the node down and answers through another.
func TestIdleTUNStop(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	n := tunNode(t)
	defer func() { _ = n.Shutdown(context.Background()) }()
	dir := t.TempDir()
	asked, stopped := filepath.Join(dir, "asked"), filepath.Join(dir, "stopped")
	cmd := fmt.Sprintf("touch %s; for i in $(seq 400); do [ -e %s ] && exit 0; sleep 0.05; done; exit 1", asked, stopped)
	go func() {
		for range 600 { // 30 s
			if _, err := os.Stat(asked); err == nil {
				_ = n.Shutdown(context.Background())
				_ = os.WriteFile(stopped, nil, 0o600)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	const conns = 100
	r, err := Run(context.Background(), Config{Workload: Idle, TUN: "gwl0", WSAddr: n.Addr("ws").String(),
		HTTPAddr: n.HTTPAddr().String(), Conns: conns, Duration: 500 * time.Millisecond, MaxDuration: 60 * time.Second,
		StopCmd: cmd})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Connected != conns || r.Disconnected != 0 {
		t.Fatalf("connected %d, disconnected during the hold %d", r.Connected, r.Disconnected)
	}
	st, h, end := r.TUN.Stop, r.TUN.AtHoldEnd, r.TUN.Stats
	if st == nil || st.Err != "" || st.Left != 0 {
		t.Fatalf("stop: %+v", st)
	}
	if got := end.GoingAway - h.GoingAway; got != conns || end.Live != 0 {
		t.Fatalf("close frames 1001 after the stop: %d of %d; %d still live", got, conns, end.Live)
	}
	if _, err := Run(context.Background(), Config{Workload: Idle, WSAddr: "127.0.0.1:1", StopCmd: "true"}); err == nil {
		t.Fatal("--stop-cmd accepted without --tun")
	}
}
