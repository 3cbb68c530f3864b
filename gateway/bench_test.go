package gateway

import (
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// countingTransport stands in for a socket in benchmarks of the gateway's
// own work: it counts writes and bytes and discards them.
type countingTransport struct {
	writes atomic.Int64
	bytes  atomic.Int64
	c      *conn
}

func (t *countingTransport) write(b []byte) error {
	t.writes.Add(1)
	t.bytes.Add(int64(len(b)))
	t.c.unsent.Add(-int64(len(b)))
	return nil
}

func (t *countingTransport) close()      {}
func (t *countingTransport) closeWrite() {}

// benchServer returns a started set of shards with n connections in group
// "room", without listeners or a bus.
func benchServer(b *testing.B, n int) (*Server, []*countingTransport) {
	b.Helper()
	cfg := Config{Logger: slog.New(slog.DiscardHandler), Listeners: []ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}}
	cfg.applyDefaults()
	s := &Server{cfg: cfg, id: "0123456789", log: cfg.Logger, inflight: map[uint64]*delivery{}, quit: make(chan struct{})}
	s.interest = newInterest(s)
	for range cfg.Shards {
		s.shards = append(s.shards, newShard(s))
	}
	l := &listener{s: s, cfg: cfg.Listeners[0]}
	var ts []*countingTransport
	for range n {
		t := &countingTransport{}
		c := s.newConn(l, t, netip.MustParseAddrPort("127.0.0.1:1234"))
		t.c = c
		c.sh.add(c)
		c.sh.mu.Lock()
		c.sh.joinLocked(c, "room")
		c.sh.mu.Unlock()
		ts = append(ts, t)
	}
	var wg sync.WaitGroup
	for _, sh := range s.shards {
		wg.Add(1)
		go func() { defer wg.Done(); sh.run() }()
	}
	b.Cleanup(func() {
		for _, sh := range s.shards {
			close(sh.quit)
		}
		wg.Wait()
	})
	return s, ts
}

func waitWrites(ts []*countingTransport, want int64) {
	for {
		var got int64
		for _, t := range ts {
			got += t.bytes.Load()
		}
		if got >= want {
			return
		}
	}
}

// BenchmarkSendToGroup10k measures one SendToGroup of 100 bytes to 10,000
// local connections: frame once, append to every queue, flush on every
// shard. ns/op is per fan-out; divide by 10,000 for per delivery.
func BenchmarkSendToGroup10k(b *testing.B) {
	const n = 10000
	s, ts := benchServer(b, n)
	cmd := &bus.Command{Op: bus.OpSendToGroup, Groups: []string{"room"}, Data: make([]byte, 100)}
	frame := int64(102)
	b.ReportAllocs()
	b.ResetTimer()
	var sent int64
	for b.Loop() {
		if err := s.broadcast(cmd); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	waitWrites(ts, sent*frame*n)
	b.StopTimer()
	var writes int64
	for _, t := range ts {
		writes += t.writes.Load()
	}
	b.ReportMetric(float64(writes)/float64(sent*n), "writes/delivery")
}

// BenchmarkEnqueueFlush measures one message to one connection: frame,
// enqueue, flush.
func BenchmarkEnqueueFlush(b *testing.B) {
	s, ts := benchServer(b, 1)
	c := ts[0].c
	msg := make([]byte, 100)
	b.ReportAllocs()
	var sent int64
	for b.Loop() {
		f, _ := c.l.frame(msg, false)
		c.sh.mu.Lock()
		c.sh.enqueueLocked(c, f)
		c.sh.mu.Unlock()
		c.sh.signal()
		sent++
		if sent%1000 == 0 {
			waitWrites(ts, sent*102) // stay under the queue bound
		}
	}
	waitWrites(ts, sent*102)
	_ = s
}

// BenchmarkInterestSubscription measures what routing by interest costs
// per distinct uid (or group) a gateway holds: one NATS subscription on
// <prefix>.uid.<token>, client and embedded-server sides together (both in
// this process). heap-B/sub is Go heap in use per subscription; ns/op is
// one subscribe, confirmed by a flush every 1,000. Run with a fixed count:
//
//	go test -run '^$' -bench InterestSubscription -benchtime 100000x ./gateway/
func BenchmarkInterestSubscription(b *testing.B) {
	nc := testBus(b)
	subj, err := bus.NewSubjects("gw")
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan *nats.Msg, 1)
	subs := make([]*nats.Subscription, 0, b.N)
	names := make([]string, b.N)
	for i := range names {
		names[i] = subj.UID("user-" + strconv.Itoa(i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sub, err := nc.ChanSubscribe(names[i], ch)
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, sub)
		if i%1000 == 999 {
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(b.N), "heap-B/sub")
	runtime.KeepAlive(subs)
}
