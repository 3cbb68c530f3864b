package gateway_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// statsEventually polls cond against the gateway's Stats.
func statsEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in time", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStatsTables checks the per-listener, per-worker, queued-bytes and
// ack-latency parts of Stats, and Accepting, over real sockets.
func TestStatsTables(t *testing.T) {
	gw := startEcho(t)
	if !gw.Accepting() {
		t.Fatal("not accepting after Start")
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr("ws").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	tcp, err := net.Dial("tcp", gw.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if _, err := tcp.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = tcp.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(tcp).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("tcp echo %q %v", line, err)
	}
	statsEventually(t, "two connections", func() bool {
		st := gw.Stats()
		return st.Listeners["ws"].Connections == 1 && st.Listeners["tcp"].Connections == 1
	})
	ws.Close()
	statsEventually(t, "ws closed and its close event acked", func() bool {
		st := gw.Stats()
		return st.Listeners["ws"].Connections == 0 && st.InFlight == 0
	})
	st := gw.Stats()
	if st.Listeners["ws"].Accepted != 1 || st.Listeners["tcp"].Accepted != 1 || st.Listeners["tcp"].Connections != 1 {
		t.Errorf("listeners %+v", st.Listeners)
	}
	// The bare worker of startEcho sends no worker id. Events: tcp
	// connect and message; ws connect, websocket_connect and close.
	if w := st.Workers["unknown"]; w.Events < 5 || w.Batches < 3 || w.Batches > w.Events {
		t.Errorf("workers %+v", st.Workers)
	}
	if st.AckLatency.Count != st.Workers["unknown"].Batches || st.AckLatency.SumSeconds <= 0 {
		t.Errorf("ack latency %+v, batches %d", st.AckLatency, st.Workers["unknown"].Batches)
	}
	if st.QueuedBytes != 0 {
		t.Errorf("queued bytes %d with nothing to send", st.QueuedBytes)
	}
	if err := gw.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if gw.Accepting() {
		t.Error("accepting after Shutdown")
	}
}
