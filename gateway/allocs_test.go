package gateway_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
)

// eventPathAllocCeiling is the most heap allocations one echo round trip
// may cost the whole test process: a TCP client's line in, the event
// batch published over the embedded NATS, the test worker's ack with a
// send action, the line written back. The client allocates nothing and
// the test worker a fixed few (decode the batch, encode the ack); the
// rest is the gateway and the NATS client and server. It is today's
// figure (41 here; 47–48 before round 5 interned the decoded strings
// and reused the window queue and the pump list)
// plus a margin for the timing of NATS's flusher: a
// change that adds an allocation per event on the gateway fails here
// (docs/benchmarks.md, "Regression benchmarks").
const eventPathAllocCeiling = 45

// TestEventPathAllocs fails when an echo round trip through the gateway
// allocates more than eventPathAllocCeiling.
func TestEventPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations")
	}
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}})
	c, err := net.Dial("tcp", gw.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := append(bytes.Repeat([]byte("x"), 64), '\n')
	got := make([]byte, len(line))
	if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	roundTrip := func() {
		if _, err := c.Write(line); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 { // warm the pools and buffers
		roundTrip()
	}
	if !bytes.Equal(got, line) {
		t.Fatalf("echo %q, want %q", got, line)
	}
	allocs := testing.AllocsPerRun(500, roundTrip)
	t.Logf("%.1f allocations per round trip (whole process)", allocs)
	if allocs > eventPathAllocCeiling {
		t.Errorf("%.1f allocations per round trip, ceiling %d: the event path allocates more than it did", allocs, eventPathAllocCeiling)
	}
}
