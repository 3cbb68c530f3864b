package gateway

import (
	"fmt"
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
	return benchServerWith(b, n, ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0"}, 0)
}

// benchServerWith is benchServer with listener lc, its connections
// compressing with window bits deflate (0: none).
func benchServerWith(b *testing.B, n int, lc ListenerConfig, deflate uint8) (*Server, []*countingTransport) {
	b.Helper()
	cfg := Config{Logger: slog.New(slog.DiscardHandler), Listeners: []ListenerConfig{lc}}
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
		c.deflate = deflate
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

// BenchmarkFanOutJSON measures one SendToGroup of a 1 KiB JSON message to
// 1,000 local connections, uncompressed and with permessage-deflate (level
// 1, compressed once for all: no context takeover); ns/delivery and
// wire-B/delivery are per connection. "compress" is one compression of the
// message alone: what every delivery would cost on top if each connection
// were compressed separately (context takeover).
func BenchmarkFanOutJSON(b *testing.B) {
	const n = 1000
	msg := benchJSON(1024)
	lc := ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0"}
	for _, tc := range []struct {
		name    string
		deflate uint8
	}{{"plain", 0}, {"deflate", 15}} {
		b.Run(tc.name, func(b *testing.B) {
			lc := lc
			if tc.deflate != 0 {
				lc.Compression = Compression{Enabled: true}
			}
			s, ts := benchServerWith(b, n, lc, tc.deflate)
			cmd := &bus.Command{Op: bus.OpSendToGroup, Groups: []string{"room"}, Data: msg}
			var fc frameCache
			fc.msg = msg
			frame := int64(len(fc.get(ts[0].c)))
			b.ReportAllocs()
			b.ResetTimer()
			var sent int64
			for b.Loop() {
				if err := s.broadcast(cmd); err != nil {
					b.Fatal(err)
				}
				sent++
				if sent%16 == 0 {
					waitWrites(ts, sent*frame*n) // stay under the queue bound
				}
			}
			waitWrites(ts, sent*frame*n)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*n), "ns/delivery")
			b.ReportMetric(float64(frame), "wire-B/delivery")
		})
	}
	b.Run("compress", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := deflateMessage(msg, 1, 15); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchJSON returns n bytes of market-data JSON (rows, then spaces up to n).
func benchJSON(n int) []byte {
	out := []byte("[")
	for i := 0; ; i++ {
		row := fmt.Appendf(nil, `{"symbol":"SYM%d","bid":%d,"ask":%d,"size":%d},`, i%40, 1000+i*7%97, 1010+i*11%89, i*13%500)
		if len(out)+len(row) >= n {
			break
		}
		out = append(out, row...)
	}
	out = out[:len(out)-1]
	for len(out) < n-1 {
		out = append(out, ' ')
	}
	return append(out, ']')
}
