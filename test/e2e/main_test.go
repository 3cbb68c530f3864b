// Package e2e holds the end-to-end tests of gatework: whole nodes started
// with node.Start (embedded NATS, real listeners on 127.0.0.1), clients on
// real sockets (gorilla/websocket, net.Dial), the HTTP API over net/http,
// and workers either in the test process or in separate processes (the
// testworker program, built once per run).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/test/e2e/testapp"
	"github.com/gatework/gatework/worker"
)

// binDir holds the testworker binary; made by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatework-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// No goroutine is ignored: every node, client, HTTP connection and
	// worker process a test starts is stopped by its cleanup.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

// testLogger discards logs unless the test runs with -v: then warnings
// and errors go to the test log.
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	s := string(p)
	// Expected on every start of a test node: not worth a line.
	if !strings.Contains(s, "no API token is set") {
		w.t.Log(strings.TrimRight(s, "\n"))
	}
	return len(p), nil
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// ctxFor returns a context bounded by d, cancelled at the end of the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// clusterConfig says how to start a node for a test.
type clusterConfig struct {
	// app: non-nil runs testapp with this config in the node's process.
	app *testapp.Config
	// handlers: other in-process handlers (used when app is nil).
	handlers *worker.Handlers
	// concurrency of the in-process worker; 0 means 8.
	concurrency int
	// processes: the embedded NATS listens on 127.0.0.1 so that
	// testworker processes can join.
	processes bool
	// eventTimeout is gateway.Config.EventTimeout; 0 means the default.
	eventTimeout time.Duration
	// redeliveryBackoff is gateway.Config.RedeliveryBackoff; 0 means the
	// default.
	redeliveryBackoff time.Duration
	// maxMessage is every listener's max_message; 0 means the default.
	maxMessage int
	// token is the HTTP API token; "" means none (loopback only).
	token string
	// maxPendingEvents is gateway.Config.MaxPendingEvents; 0: default.
	maxPendingEvents int
	// maxQueueBytes is every listener's max_queue_bytes; 0: default.
	maxQueueBytes int
	// closeTimeout is gateway.Config.CloseTimeout; 0: default.
	closeTimeout time.Duration
	// pingInterval and idleTimeout are every listener's; 0: default.
	pingInterval, idleTimeout time.Duration
	// natsURL: join the bus of another cluster (its NATSURL) instead of
	// starting an embedded NATS.
	natsURL string
	// udp adds a UDP listener named udp (no framing).
	udp bool
	// dispatch is gateway.Config.Dispatch; "" means the default.
	dispatch string
}

// The user with full access of a test cluster's bus (nats.user).
const (
	e2eUser     = "e2e"
	e2ePassword = "e2e-password"
)

// cluster is one node (gateway, embedded NATS, HTTP API, maybe an
// in-process worker) plus the worker processes a test started.
type cluster struct {
	t     *testing.T
	n     *node.Node
	token string
	hc    *http.Client
	tr    *http.Transport

	mu      sync.Mutex
	workers []*proc
	down    bool
}

// startCluster starts a node with a ws and a tcp listener (line framing)
// and an HTTP server. Cleanup shuts the node down first (so that close
// events still reach the workers), then kills the worker processes.
func startCluster(t *testing.T, cc clusterConfig) *cluster {
	t.Helper()
	cfg := node.Config{
		Logger: testLogger(t),
		Gateway: gateway.Config{
			EventTimeout:      cc.eventTimeout,
			RedeliveryBackoff: cc.redeliveryBackoff,
			MaxPendingEvents:  cc.maxPendingEvents,
			CloseTimeout:      cc.closeTimeout,
			Dispatch:          cc.dispatch,
			Listeners: []gateway.ListenerConfig{
				{Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: cc.maxMessage, MaxQueueBytes: cc.maxQueueBytes,
					PingInterval: cc.pingInterval, IdleTimeout: cc.idleTimeout},
				{Protocol: "tcp", Addr: "127.0.0.1:0", MaxMessage: cc.maxMessage, MaxQueueBytes: cc.maxQueueBytes,
					PingInterval: cc.pingInterval, IdleTimeout: cc.idleTimeout},
			},
		},
		HTTP: node.HTTPConfig{Addr: "127.0.0.1:0", Token: cc.token},
	}
	if cc.udp {
		cfg.Gateway.Listeners = append(cfg.Gateway.Listeners, gateway.ListenerConfig{Protocol: "udp", Addr: "127.0.0.1:0",
			MaxMessage: cc.maxMessage, MaxQueueBytes: cc.maxQueueBytes, IdleTimeout: cc.idleTimeout})
	}
	if cc.processes {
		cfg.NATS.Listen = "127.0.0.1:0"
	}
	cfg.NATS.URL = cc.natsURL
	if cc.processes || cc.natsURL != "" {
		// A user with full access, for the other gateways of the bus;
		// worker processes log in as the generated worker user.
		cfg.NATS.User, cfg.NATS.Password = e2eUser, e2ePassword
	}
	h := cc.handlers
	if cc.app != nil {
		hh := testapp.Handlers(*cc.app)
		h = &hh
	}
	if h != nil {
		cfg.Worker = node.WorkerConfig{Handlers: h, Concurrency: cc.concurrency}
		if cc.concurrency == 0 {
			cfg.Worker.Concurrency = 8
		}
	}
	n, err := node.Start(ctxFor(t, 20*time.Second), cfg)
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	c := &cluster{t: t, n: n, token: cc.token, tr: tr, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
	t.Cleanup(c.shutdown)
	return c
}

// shutdown stops the node, then the worker processes; it is idempotent.
func (c *cluster) shutdown() {
	c.mu.Lock()
	if c.down {
		c.mu.Unlock()
		return
	}
	c.down = true
	workers := c.workers
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.n.Shutdown(ctx); err != nil {
		c.t.Errorf("node shutdown: %v", err)
	}
	for _, w := range workers {
		w.kill()
	}
	c.tr.CloseIdleConnections()
}

func (c *cluster) wsURL() string   { return "ws://" + c.n.Addr("ws").String() + "/" }
func (c *cluster) tcpAddr() string { return c.n.Addr("tcp").String() }

// The testworker binary, built on first use.
var (
	buildOnce sync.Once
	buildErr  error
	workerBin string
)

func testworkerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		bin := filepath.Join(binDir, "testworker")
		// go test puts its own GOROOT/bin first in PATH.
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("no go tool to build ./testworker: %w", err)
			return
		}
		cmd := exec.Command(goTool, "build", "-o", bin, "./testworker")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./testworker: %w\n%s", err, out)
			return
		}
		workerBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return workerBin
}

// proc is a testworker process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	id     string
	out    *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
	once   sync.Once
}

// startWorker starts a testworker process on the cluster's NATS with the
// given extra flags and waits until it is subscribed. It is killed when the
// cluster shuts down (or earlier with kill).
func (c *cluster) startWorker(t *testing.T, args ...string) *proc {
	t.Helper()
	url := c.n.NATSURL()
	if url == "" {
		t.Fatal("cluster started without processes: true")
	}
	bin := testworkerBinary(t)
	p := &proc{t: t, out: newLockedBuffer(), stderr: newLockedBuffer(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-nats", url}, args...)...)
	// The credentials go in the environment, as for a worker started by
	// hand (GATEWORK_NATS_USER, _PASSWORD): a worker logs in as the
	// node's generated worker user, a gateway as the cluster's
	// full-access user.
	user, password := e2eUser, e2ePassword
	if !slices.Contains(args, "-gateway") {
		wo := c.n.WorkerOptions("testworker")
		user, password = wo.User, wo.Password
	}
	p.cmd.Env = append(os.Environ(), "GATEWORK_NATS_USER="+user, "GATEWORK_NATS_PASSWORD="+password)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.stderr
	// The worker exits when its stdin closes: a test process that dies
	// leaves no worker behind.
	if _, err := p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start testworker: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	if c.down {
		c.mu.Unlock()
		p.kill()
		t.Fatal("cluster already shut down")
	}
	c.workers = append(c.workers, p)
	c.mu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			if s := p.stderr.String(); s != "" {
				t.Logf("testworker %s stderr:\n%s", p.id, s)
			}
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		if line, ok := p.out.line("ready "); ok {
			p.id = strings.TrimPrefix(line, "ready ")
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("testworker exited before ready: %s", p.stderr.String())
		case <-deadline:
			p.kill()
			t.Fatalf("testworker not ready within 30s: %s", p.stderr.String())
		case <-p.out.changed():
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone. Idempotent.
func (p *proc) kill() {
	p.once.Do(func() { _ = p.cmd.Process.Kill() })
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("testworker %d did not exit after SIGKILL", p.cmd.Process.Pid)
	}
}

// lockedBuffer collects a process's output; changed wakes waiters.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{ch: make(chan struct{})} }

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.ch)
	b.ch = make(chan struct{})
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

// line returns the first complete line that starts with prefix.
func (b *lockedBuffer) line(prefix string) (string, bool) {
	s := b.String()
	for l := range strings.Lines(s) {
		if strings.HasPrefix(l, prefix) && strings.HasSuffix(l, "\n") {
			return strings.TrimSuffix(l, "\n"), true
		}
	}
	return "", false
}
