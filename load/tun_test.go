package load

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
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
	// RunTUN opens gwl0 (the kernel creates it); it needs an address
	// and to be up before the node listens on it: make it persistent.
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
