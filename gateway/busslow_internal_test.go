package gateway

import (
	"testing"
	"time"
)

// TestBusSlowConsumerCounted makes the gateway's ack subscription a slow
// consumer on a real embedded NATS (an ordered command channel of one
// message, then bursts of acks) and checks that Stats counts it.
func TestBusSlowConsumerCounted(t *testing.T) {
	nc := testBus(t)
	s, err := New(nc, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	s.cmdQueueLen = 1
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	if got := s.Stats().BusSlowConsumers; got != 0 {
		t.Fatalf("BusSlowConsumers = %d before any burst", got)
	}
	ackSub := s.subs[0]
	if ackSub.Subject != s.ackPrefix+"*" {
		t.Fatalf("subs[0] is %q, not the ack subscription", ackSub.Subject)
	}
	pub := nc // the gateway's own connection: its messages come back through the server
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().BusSlowConsumers == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no slow consumer counted")
		}
		for range 2000 {
			if err := pub.Publish(s.ackPrefix+"1", []byte("not an ack")); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n, err := ackSub.Dropped(); err != nil || n == 0 {
		t.Errorf("ack subscription dropped %d (%v), want some", n, err)
	}
}
