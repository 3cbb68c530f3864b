package testbus_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
)

// TestRoundTrip: two connections to one embedded bus reach each other,
// and both end with the test that made them.
func TestRoundTrip(t *testing.T) {
	e := testbus.Start(t, natsembed.Config{})
	a, b := testbus.Conn(t, e, "a"), testbus.Conn(t, e, "b")
	sub, err := a.SubscribeSync("testbus.ping")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("testbus.ping", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "hi" {
		t.Fatalf("got %v, %v; want hi", m, err)
	}
	var nc *nats.Conn
	var srv *natsembed.Server
	t.Run("short", func(t *testing.T) {
		srv = testbus.Start(t, natsembed.Config{})
		nc = testbus.Conn(t, srv, "short")
		if !nc.IsConnected() {
			t.Fatal("not connected")
		}
	})
	if !nc.IsClosed() {
		t.Error("the connection outlived the test that made it")
	}
	if srv.NATS().Running() {
		t.Error("the server outlived the test that started it")
	}
}
