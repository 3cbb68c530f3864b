package api_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// TestSendsRefusedWhileOverloaded: while a live gateway's heartbeats say
// it is overloaded, every send fails with ErrOverloaded before it reaches
// the bus (and is counted in Refused); other calls go on; once a heartbeat
// clears the flag, sends go through again.
func TestSendsRefusedWhileOverloaded(t *testing.T) {
	b := newTestBus(t)
	c := b.client(t, api.Config{})
	g := startFakeGW(t, b, gw1)
	id := g.add("u", "g")
	announce(t, c, g)
	sends := []struct {
		name       string
		call       func(ctx context.Context) error
		onlyRefuse bool // the fake gateway does not answer it
	}{
		{"SendToClient", func(ctx context.Context) error { return c.SendToClient(ctx, id, []byte("x")) }, false},
		{"SendToClient large", func(ctx context.Context) error { return c.SendToClient(ctx, id, make([]byte, api.CheckedSendSize+1)) }, true},
		{"SendToClients", func(ctx context.Context) error { return c.SendToClients(ctx, []string{id}, []byte("x")) }, false},
		{"SendToUID", func(ctx context.Context) error { return c.SendToUID(ctx, []string{"u"}, []byte("x")) }, false},
		{"SendToGroup", func(ctx context.Context) error { return c.SendToGroup(ctx, []string{"g"}, []byte("x")) }, false},
		{"SendToAll", func(ctx context.Context) error { return c.SendToAll(ctx, []byte("x")) }, false},
	}
	ctx := context.Background()
	setOverload := func(on bool) {
		g.set(func(g *fakeGW) { g.overload = on })
		g.heartbeat(false)
	}

	setOverload(true)
	waitFor(t, 5*time.Second, "the overloaded flag", func() bool { return errors.Is(c.SendToAll(ctx, nil), api.ErrOverloaded) })
	before := len(g.seen())
	refused := c.Refused()
	for _, s := range sends {
		if err := s.call(ctx); !errors.Is(err, api.ErrOverloaded) {
			t.Errorf("%s while overloaded: %v, want ErrOverloaded", s.name, err)
		}
	}
	if got := c.Refused() - refused; got != uint64(len(sends)) {
		t.Errorf("Refused grew by %d, want %d", got, len(sends))
	}
	if _, err := c.IsOnline(ctx, id); err != nil {
		t.Errorf("IsOnline while overloaded: %v", err)
	}

	setOverload(false)
	waitFor(t, 5*time.Second, "the flag cleared", func() bool { return c.SendToAll(ctx, nil) == nil })
	// Nothing refused reached the gateway: the first command it saw since
	// is the probe that went through (published after them, on the same
	// connection).
	waitFor(t, 5*time.Second, "the probe", func() bool { return len(g.seen()) > before })
	if seen := g.seen()[before:]; len(seen) != 1 || seen[0].Op != bus.OpSendToAll || len(seen[0].Data) != 0 {
		t.Fatalf("the gateway saw %d commands after the flag was set, want only the probe: %+v", len(seen), seen)
	}
	for _, s := range sends {
		if s.onlyRefuse {
			continue
		}
		if err := s.call(ctx); err != nil {
			t.Errorf("%s after the flag cleared: %v", s.name, err)
		}
	}

	// A gateway that refuses a send itself answers overloaded.
	if err := (&api.GatewayError{Gateway: gw1, Code: bus.ErrCodeOverloaded}); !errors.Is(err, api.ErrOverloaded) {
		t.Errorf("GatewayError with code overloaded is not ErrOverloaded")
	}
}

// TestSendsRefusedLocalOverloaded: Config.LocalOverloaded refuses sends
// at once, with no heartbeat.
func TestSendsRefusedLocalOverloaded(t *testing.T) {
	b := newTestBus(t)
	var local atomic.Bool
	c := b.client(t, api.Config{LocalOverloaded: local.Load})
	ctx := context.Background()
	if err := c.SendToAll(ctx, []byte("x")); err != nil {
		t.Fatalf("before: %v", err)
	}
	local.Store(true)
	if err := c.SendToAll(ctx, []byte("x")); !errors.Is(err, api.ErrOverloaded) {
		t.Fatalf("local gateway overloaded: %v, want ErrOverloaded", err)
	}
	local.Store(false)
	if err := c.SendToAll(ctx, []byte("x")); err != nil {
		t.Fatalf("after: %v", err)
	}
}
