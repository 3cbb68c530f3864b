package e2e

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
)

// benchCluster is n gateways on one embedded NATS with a worker that
// tells each client its id, and an API client. It uses only the public
// API, so that the same file measures older versions too.
type benchCluster struct {
	gws []*gateway.Server
	api *api.Client
}

func startBenchCluster(b *testing.B, n int, joinOnConnect bool) *benchCluster {
	b.Helper()
	e := testbus.Start(b, natsembed.Config{})
	conn := func(name string) *nats.Conn { return testbus.Conn(b, e, name) }
	subj := bus.Subjects{Prefix: bus.DefaultPrefix}
	wc := conn("worker")
	if _, err := wc.QueueSubscribe(subj.Events(), subj.WorkersQueue(), func(m *nats.Msg) {
		var batch bus.EventBatch
		if bus.DecodeEventBatch(m.Data, &batch) != nil {
			return
		}
		ack := bus.Ack{Delivery: batch.Delivery}
		for _, ev := range batch.Events {
			if ev.Type != bus.EventConnect {
				continue
			}
			if joinOnConnect { // W4 as the issue has it: bind, join, greet
				ack.Actions = append(ack.Actions,
					bus.Action{Type: bus.ActionBindUID, Arg: "u-" + batch.Client},
					bus.Action{Type: bus.ActionJoinGroup, Arg: "lobby"},
					bus.Action{Type: bus.ActionJoinGroup, Arg: "r-" + batch.Client})
			}
			ack.Actions = append(ack.Actions, bus.Action{Type: bus.ActionSend, Data: []byte(batch.Client)})
		}
		_ = m.Respond(bus.AppendAck(nil, &ack))
	}); err != nil {
		b.Fatal(err)
	}
	bc := &benchCluster{}
	for i := range n {
		gw, err := gateway.New(conn(fmt.Sprint("gw", i)), gateway.Config{
			Logger:    slog.New(slog.DiscardHandler),
			Listeners: []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}},
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := gw.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = gw.Shutdown(ctx)
		})
		bc.gws = append(bc.gws, gw)
	}
	var err error
	bc.api, err = api.New(conn("api"), api.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bc.api.Close() })
	return bc
}

// dial connects to gateway i and returns the connection, a reader and the
// client's id.
func (bc *benchCluster) dial(b *testing.B, i int) (net.Conn, *bufio.Reader, string) {
	c, err := net.Dial("tcp", bc.gws[i].Addr("tcp").String())
	if err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	id, err := r.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return c, r, strings.TrimSuffix(id, "\n")
}

// BenchmarkChurnBindJoin measures W4's cycle with the bus work of a real
// app, one at a time: connect, read the id, BindUID to a uid of its own,
// JoinGroup a shared group and one of its own, close.
func BenchmarkChurnBindJoin(b *testing.B) {
	bc := startBenchCluster(b, 1, false)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c, _, id := bc.dial(b, 0)
		if err := bc.api.BindUID(ctx, id, fmt.Sprint("user-", i)); err != nil {
			b.Fatal(err)
		}
		if err := bc.api.JoinGroup(ctx, id, "lobby"); err != nil {
			b.Fatal(err)
		}
		if err := bc.api.JoinGroup(ctx, id, fmt.Sprint("room-", i)); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
		i++
	}
}

// BenchmarkSendToGroupThreeGateways measures SendToGroup through the API
// with the group's one member on the first of three gateways, until the
// member has received every message. At most 1,000 messages are in flight
// (sent, not yet received), so that the bus and the gateway's queue are
// never overrun.
func BenchmarkSendToGroupThreeGateways(b *testing.B) {
	bc := startBenchCluster(b, 3, false)
	ctx := context.Background()
	c, r, id := bc.dial(b, 0)
	defer c.Close()
	if err := bc.api.JoinGroup(ctx, id, "room"); err != nil {
		b.Fatal(err)
	}
	msg := []byte(strings.Repeat("x", 100))
	done := make(chan error, 1)
	window := make(chan struct{}, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	n := b.N
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		for range n {
			if _, err := r.ReadSlice('\n'); err != nil {
				done <- err
				return
			}
			<-window
		}
		done <- nil
	}()
	for range n {
		window <- struct{}{}
		if err := bc.api.SendToGroup(ctx, []string{"room"}, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkChurnJoinOnConnect is W4 as the issue has it, 50 loops in
// flight: connect; the worker's OnConnect binds a uid of the client's own,
// joins a shared group and one of its own, and greets; the client reads
// the greeting and closes.
func BenchmarkChurnJoinOnConnect(b *testing.B) {
	bc := startBenchCluster(b, 1, true)
	b.ReportAllocs()
	b.SetParallelism(25)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, _, _ := bc.dial(b, 0)
			_ = c.Close()
		}
	})
}

// BenchmarkSendToClientsThreeGateways measures sendToClients to 1,000
// client ids spread over three gateways (one connected client on each,
// the other ids of no connection), each send read by the three clients
// before the next; bus-msgs/op is the commands the gateways received per
// send: one per gateway (3), not one per id (1,000).
func BenchmarkSendToClientsThreeGateways(b *testing.B) {
	bc := startBenchCluster(b, 3, false)
	ctx := context.Background()
	var readers []*bufio.Reader
	var ids []string
	for i := range bc.gws {
		c, r, id := bc.dial(b, i)
		b.Cleanup(func() { _ = c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Minute))
		readers, ids = append(readers, r), append(ids, id)
	}
	for i := len(ids); i < 1000; i++ {
		gw := bc.gws[i%3].ID()
		ids = append(ids, fmt.Sprintf("%s%010x", gw, 1_000_000+i))
	}
	received := func() uint64 {
		var n uint64
		for _, gw := range bc.gws {
			n += gw.InterestStats().Received
		}
		return n
	}
	msg := []byte(strings.Repeat("x", 100))
	before := received()
	b.ReportAllocs()
	for b.Loop() {
		if err := bc.api.SendToClients(ctx, ids, msg); err != nil {
			b.Fatal(err)
		}
		for _, r := range readers {
			if _, err := r.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(received()-before)/float64(b.N), "bus-msgs/op")
}
