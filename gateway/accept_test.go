package gateway

import (
	"context"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gatework/gatework/bus"
)

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestStopAcceptingDoesNotSpin: once a draining gateway closes its
// listening sockets, nothing may busy-loop on them (nbio's own acceptor
// did, burning a core for the whole drain), and new clients are refused.
func TestStopAcceptingDoesNotSpin(t *testing.T) {
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := bus.Connect(e.ConnectOptions("gw"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := New(nc, Config{Logger: slog.New(slog.DiscardHandler), Listeners: []ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0"}, {Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
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
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := bus.Connect(e.ConnectOptions("gw"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for range 5 {
		s, err := New(nc, Config{Logger: slog.New(slog.DiscardHandler), Listeners: []ListenerConfig{
			{Protocol: "ws", Addr: "127.0.0.1:0"}, {Protocol: "tcp", Addr: "127.0.0.1:0"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
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
