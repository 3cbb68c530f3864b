package gateway

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// TestOverloadRefusesAndCounts: a client that reads nothing is sent far
// more than the gateway's MaxQueuedBytes. The gateway announces itself
// overloaded in a heartbeat, refuses sends past twice the bound (answered
// overloaded when they carry a reply subject, counted in SendsRefused),
// and, once the client has read its backlog, clears the flag in another
// heartbeat and takes sends again. Every send is either delivered or
// counted as refused.
func TestOverloadRefusesAndCounts(t *testing.T) {
	const (
		bound = 256 << 10
		size  = 64 << 10
		sends = 200 // 12.8 MB: well past what the socket buffers hold
	)
	l := wsListener(-1, -1)
	l.MaxQueueBytes = 64 << 20 // the per-connection bound stays out of the way
	s, r, nc := startWithWorker(t, Config{Listeners: []ListenerConfig{l}, MaxQueuedBytes: bound})

	var hbMu sync.Mutex
	var flags []bool // Overloaded of this gateway's heartbeats, in order
	hbSub, err := nc.Subscribe(s.subj.Heartbeat(), func(m *nats.Msg) {
		var hb bus.Heartbeat
		if bus.DecodeHeartbeat(m.Data, &hb) == nil && hb.Gateway == s.id {
			hbMu.Lock()
			flags = append(flags, hb.Overloaded)
			hbMu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hbSub.Unsubscribe() }()
	lastFlag := func(want bool) func() bool {
		return func() bool {
			hbMu.Lock()
			defer hbMu.Unlock()
			return len(flags) > 0 && flags[len(flags)-1] == want
		}
	}

	slow := dialSlowWS(t, s, "slow")
	id := r.id(t, "slow")
	msg := make([]byte, size)
	send := func() *nats.Msg {
		t.Helper()
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToClient, Clients: []string{id}, Data: msg}
		rep, err := nc.Request(s.subj.Cmd(s.id), bus.AppendCommand(nil, &cmd), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	replyCode := func(m *nats.Msg) string {
		t.Helper()
		var rep bus.Reply
		if err := bus.DecodeReply(m.Data, &rep); err != nil {
			t.Fatal(err)
		}
		return rep.ErrorCode
	}

	refusedReplies := 0
	for range sends {
		if replyCode(send()) == bus.ErrCodeOverloaded {
			refusedReplies++
		}
	}
	waitFor(t, 5*time.Second, "an overloaded heartbeat", lastFlag(true))
	if !s.Stats().Overloaded {
		t.Fatal("Stats.Overloaded is false with the backlog past the bound")
	}
	refused := s.Stats().SendsRefused
	if refusedReplies == 0 || uint64(refusedReplies) != refused {
		t.Fatalf("%d sends answered overloaded, SendsRefused = %d: want the same, and more than 0", refusedReplies, refused)
	}
	if q := s.Stats().QueuedBytes; q > 2*bound+4*size+8<<20 {
		t.Fatalf("queued %d bytes: refusals did not bound the backlog", q)
	}

	// The client reads its backlog: every send not refused arrives.
	want := sends - refusedReplies
	if err := slow.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < want; got++ {
		if _, _, err := slow.ReadMessage(); err != nil {
			t.Fatalf("after %d of %d messages: %v", got, want, err)
		}
	}
	waitFor(t, 5*time.Second, "a heartbeat clearing the flag", lastFlag(false))
	if s.Stats().Overloaded {
		t.Fatal("Stats.Overloaded still set with the backlog read")
	}
	if code := replyCode(send()); code != "" {
		t.Fatalf("a send after the backlog cleared: error code %q", code)
	}
	if _, _, err := slow.ReadMessage(); err != nil {
		t.Fatal(err)
	}
}
