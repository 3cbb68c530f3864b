package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/internal/testbus"
)

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// testBus starts an embedded NATS with no worker and returns a connection
// to it; both stop when the test ends.
func testBus(t testing.TB) *nats.Conn {
	t.Helper()
	return testbus.New(t, "gw")
}

// startServer starts a gateway with listeners on nc.
func startServer(t *testing.T, nc *nats.Conn, cfg Config) *Server {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStopAcceptingDoesNotSpin: once a draining gateway closes its
// listening sockets, nothing may busy-loop on them (nbio's own acceptor
// did, burning a core for the whole drain), and new clients are refused.
func TestStopAcceptingDoesNotSpin(t *testing.T) {
	nc := testBus(t)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0"}, {Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	defer func() {
		// No worker runs here, so the close events cannot be handed over:
		// bound the drain.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	client, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, l := range s.listeners {
		l.stopAccepting()
	}
	if c, err := net.DialTimeout("tcp", s.Addr("ws").String(), time.Second); err == nil {
		c.Close()
		t.Fatal("a new client was accepted after the listener stopped accepting")
	}
	before := cpuTime(t)
	time.Sleep(300 * time.Millisecond)
	if used := cpuTime(t) - before; used > 150*time.Millisecond {
		t.Fatalf("the process used %v of CPU in 300ms while idle after stopAccepting: something spins", used)
	}
}

// TestStopRightAfterStart: a gateway stopped right after it started (a
// node whose HTTP port is taken does this) stops, and nothing spins: nbio
// loses a Stop that comes before its pollers enter their loops.
func TestStopRightAfterStart(t *testing.T) {
	nc := testBus(t)
	for range 5 {
		s := startServer(t, nc, Config{Listeners: []ListenerConfig{
			{Protocol: "ws", Addr: "127.0.0.1:0"}, {Protocol: "tcp", Addr: "127.0.0.1:0"}}})
		done := make(chan error, 1)
		go func() { done <- s.Shutdown(context.Background()) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown right after Start did not return")
		}
	}
}

// TestDrainWindow: Shutdown spreads the closes over DrainWindow (lame
// duck) instead of closing every client at the same moment, and the
// counters of Stats follow the traffic.
func TestDrainWindow(t *testing.T) {
	nc := testBus(t)
	s := startServer(t, nc, Config{DrainWindow: 600 * time.Millisecond,
		Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	const n = 40
	closedAt := make(chan time.Time, n)
	for range n {
		c, err := net.Dial("tcp", s.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 16)
			for {
				if _, err := c.Read(buf); err != nil {
					closedAt <- time.Now()
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().MessagesIn < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.Stats(); st.Connections != n || st.MessagesIn != n || st.BytesIn != 5*n {
		t.Fatalf("stats %+v: want %d connections, messages and %d bytes in", st, n, 5*n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	stopped := make(chan struct{})
	go func() { _ = s.Shutdown(ctx); close(stopped) }() // no worker: the drain ends with ctx
	var first, last time.Time
	for i := range n {
		select {
		case at := <-closedAt:
			if i == 0 {
				first = at
			}
			last = at
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d clients were closed", i, n)
		}
	}
	if spread := last.Sub(first); spread < 300*time.Millisecond {
		t.Fatalf("closes spread over %v, want about the 600ms drain window", spread)
	}
	<-stopped
}

// TestHandshakeTimeout: a client that connects to a WebSocket listener and
// never completes its upgrade is closed after HandshakeTimeout; a client
// that completed it stays.
func TestHandshakeTimeout(t *testing.T) {
	nc := testBus(t)
	s := startServer(t, nc, Config{HandshakeTimeout: 500 * time.Millisecond,
		Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	addr := s.Addr("ws").String()
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil { // never finished
		t.Fatal(err)
	}
	good, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = good.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	if n, err := good.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 101") {
		t.Fatalf("upgrade: %q, %v", buf[:n], err)
	}
	start := time.Now()
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := slow.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the unfinished handshake was not closed: %v", err)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("closed after %v, want about the 500ms handshake timeout", waited)
	}
	// The upgraded client is still there.
	_ = good.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := good.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the upgraded client was disturbed: %v", err)
	}
	if n := s.Stats().Connections; n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// TestRegisteredBeforeUpgradeAnswer: once a client has read the 101, the
// gateway counts it (a backend told "I am connected" finds the client), on
// every one of many connections. The 101 used to be written before the
// connection joined its shard, and a query in between missed it.
func TestRegisteredBeforeUpgradeAnswer(t *testing.T) {
	nc := testBus(t)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	url := "ws://" + s.Addr("ws").String() + "/"
	const n = 300
	for i := range n {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		// All stay open: the count must already include this one.
		if got := s.connCount(); got != i+1 {
			t.Fatalf("connection %d: the gateway counts %d connections after its 101, want %d", i, got, i+1)
		}
	}
}
