package e2e

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

// orderHandlers answers "mix N" with N lines 0..N-1, the even ones
// through c.Send (the batch's actions), the odd ones through
// c.API().SendToClient to the client itself, and then "done" through
// c.Send ("plain N": all through c.Send); "join G" joins group G, sends to G through the API, reads its
// session back after setting it, and says "joined <session>".
func orderHandlers(t testing.TB) *worker.Handlers {
	return &worker.Handlers{
		OnMessage: func(c *worker.Context, msg []byte) {
			ctx := c.Context()
			verb, arg, _ := strings.Cut(string(msg), " ")
			switch verb {
			case "mix":
				n, _ := strconv.Atoi(arg)
				for i := range n {
					line := []byte(strconv.Itoa(i))
					if i%2 == 0 {
						c.Send(line)
					} else if err := c.API().SendToClient(ctx, c.ClientID(), line); err != nil {
						t.Error(err)
					}
				}
				c.Send([]byte("done"))
			case "plain": // as mix, all through c.Send: no flush
				n, _ := strconv.Atoi(arg)
				for i := range n {
					c.Send([]byte(strconv.Itoa(i)))
				}
				c.Send([]byte("done"))
			case "join":
				c.JoinGroup(arg)
				if err := c.SetSession(api.Session{"room": arg}); err != nil {
					t.Error(err)
				}
				if err := c.API().SendToGroup(ctx, []string{arg}, []byte("to "+arg)); err != nil {
					t.Error(err)
				}
				s, err := c.API().GetSession(ctx, c.ClientID())
				if err != nil {
					t.Error(err)
				}
				c.Send([]byte("joined " + s["room"].(string)))
			}
		},
	}
}

// TestActionsAndAPICallsInOrder: a handler's actions (sent in its batch's
// ack) and its API calls to its own client reach the client in the order
// the handler made them, every time; an API call sees the actions made
// before it (a join, a session).
func TestActionsAndAPICallsInOrder(t *testing.T) {
	c := startCluster(t, clusterConfig{handlers: orderHandlers(t)})
	conn, err := net.Dial("tcp", c.tcpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	rd := bufio.NewReader(conn)
	const n = 20
	for round := range 50 {
		if _, err := conn.Write([]byte("mix " + strconv.Itoa(n) + "\n")); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("round %d: %v after %q", round, err, got)
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "done" {
				break
			}
			got = append(got, line)
		}
		for i, l := range got {
			if l != strconv.Itoa(i) || len(got) != n {
				t.Fatalf("round %d: got %q, want 0..%d in order", round, got, n-1)
			}
		}
	}
	for round := range 20 {
		g := "room" + strconv.Itoa(round)
		if _, err := conn.Write([]byte("join " + g + "\n")); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"to " + g, "joined " + g} {
			line, err := rd.ReadString('\n')
			if err != nil || line != want+"\n" {
				t.Fatalf("round %d: got %q (%v), want %q", round, line, err, want)
			}
		}
	}
}

// BenchmarkFlushBeforeAPICall: a client's round trip to a handler that
// queues an action then calls the API (mix: one flush, a round trip
// between the worker and the gateway) against one that only queues
// actions (plain: no flush).
func BenchmarkFlushBeforeAPICall(b *testing.B) {
	for _, verb := range []string{"plain", "mix"} {
		b.Run(verb, func(b *testing.B) {
			n, err := node.Start(context.Background(), node.Config{
				Logger:  slog.New(slog.DiscardHandler),
				Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0"}}},
				Worker:  node.WorkerConfig{Handlers: orderHandlers(b), Concurrency: 8},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = n.Shutdown(ctx)
			}()
			conn, err := net.Dial("tcp", n.Addr("tcp").String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			rd := bufio.NewReader(conn)
			req := []byte(verb + " 2\n")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				for _, want := range []string{"0\n", "1\n", "done\n"} {
					if l, err := rd.ReadString('\n'); err != nil || l != want {
						b.Fatalf("got %q, %v; want %q", l, err, want)
					}
				}
			}
		})
	}
}
