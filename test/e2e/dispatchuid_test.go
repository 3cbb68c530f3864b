package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/worker"
)

// uidProbe is a handler that detects overlapping events of one uid: "bind
// U" binds the client and answers "bound"; "seq N" counts the handlers of
// the client's uid running at once (an overlap when more than one), holds
// for 1ms, records the client's N and answers "ok N".
type uidProbe struct {
	running  atomic.Int32
	overlaps atomic.Int32
	mu       sync.Mutex
	seen     map[string][]int // by client id, in handling order
}

func (p *uidProbe) handlers() *worker.Handlers {
	return &worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) {
		verb, arg, _ := strings.Cut(string(msg), " ")
		switch verb {
		case "bind":
			c.BindUID(arg)
			c.Send([]byte("bound"))
		case "seq":
			if p.running.Add(1) > 1 {
				p.overlaps.Add(1)
			}
			time.Sleep(time.Millisecond)
			n, _ := strconv.Atoi(arg)
			p.mu.Lock()
			p.seen[c.ClientID()] = append(p.seen[c.ClientID()], n)
			p.mu.Unlock()
			p.running.Add(-1)
			c.Send([]byte("ok " + arg))
		}
	}}
}

// runUIDClients connects 3 TCP clients, binds them to one uid, then has
// each send n "seq" messages at once and read the n answers.
func runUIDClients(t *testing.T, c *cluster, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		conn, err := net.Dial("tcp", c.tcpAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		rd := bufio.NewReader(conn)
		if _, err := conn.Write([]byte("bind u1\n")); err != nil {
			t.Fatal(err)
		}
		if l, err := rd.ReadString('\n'); err != nil || l != "bound\n" {
			t.Fatalf("client %d bind: %q %v", i, l, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b strings.Builder
			for j := range n {
				fmt.Fprintf(&b, "seq %d\n", j)
			}
			if _, err := conn.Write([]byte(b.String())); err != nil {
				errs <- err
				return
			}
			for j := range n {
				l, err := rd.ReadString('\n')
				if err != nil || l != "ok "+strconv.Itoa(j)+"\n" {
					errs <- fmt.Errorf("client %d answer %d: %q %v", i, j, l, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDispatchByUID: under dispatch uid the events of 3 connections bound
// to one uid are never handled at once, though the worker runs 8 batches
// at once, and each connection's are handled in order; under dispatch
// client (the default) the same load overlaps (the probe sees it).
func TestDispatchByUID(t *testing.T) {
	for _, mode := range []string{gateway.DispatchUID, gateway.DispatchClient} {
		t.Run(mode, func(t *testing.T) {
			p := &uidProbe{seen: map[string][]int{}}
			c := startCluster(t, clusterConfig{handlers: p.handlers(), dispatch: mode})
			const n = 40
			runUIDClients(t, c, n)
			if mode == gateway.DispatchClient {
				if p.overlaps.Load() == 0 {
					t.Error("dispatch client: no overlap seen; the probe proves nothing")
				}
				return
			}
			if o := p.overlaps.Load(); o != 0 {
				t.Errorf("dispatch uid: %d events of the uid handled while another ran", o)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.seen) != 3 {
				t.Fatalf("clients seen: %d", len(p.seen))
			}
			for id, seq := range p.seen {
				for j, v := range seq {
					if v != j || len(seq) != n {
						t.Fatalf("client %s handled %v, want 0..%d in order", id, seq, n-1)
					}
				}
			}
			if st := c.n.Gateway().Stats(); st.InFlight != 0 {
				t.Errorf("in flight after the run: %d", st.InFlight)
			}
		})
	}
}
