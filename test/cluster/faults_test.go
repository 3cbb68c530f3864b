//go:build cluster && linux

package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// expiryWindow is the longest a dead gateway may stay in the answers: 3
// missed heartbeats of 1 s (membership.ExpiryIntervals × the default heartbeat
// interval), within the bound of 5 s.
const expiryWindow = 5 * time.Second

// queryBound is the longest one query may take: the API's query timeout
// (2 s by default) plus slack for this slow machine.
const queryBound = 4 * time.Second

// TestMembership stops one gateway cleanly and kills another with SIGKILL:
// the first leaves the answers at once; the clients of the second vanish
// from counts and lists within the expiry window, queries meanwhile answer
// partial naming it and never hang, and the clients of the third gateway
// are not disturbed. Then a new gateway joins.
func TestMembership(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	var cs []*wsClient
	for i := range 9 {
		cs = append(cs, c.dial(t, 1+i%3, true))
	}
	c.waitCount(t, 9, 15*time.Second)
	c.identify(t, cs)
	for i, w := range cs {
		c.ok(t, "joinGroup", map[string]any{"client": w.id, "group": "all"})
		c.ok(t, "bindUid", map[string]any{"client": w.id, "uid": "u" + strconv.Itoa(i)})
	}

	// A clean stop: the gateway drains its clients and announces that it
	// leaves; the very next query is complete without it.
	g3 := c.gws[2]
	g3.p.stop(t, 15*time.Second)
	if n, r := c.count(t, "getClientCount", nil); n != 6 || r.Partial {
		t.Errorf("right after a clean stop: count %d, partial %v %v; want 6, complete", n, r.Partial, r.Missing)
	}
	for i := 2; i < 9; i += 3 {
		if !cs[i].isClosed() {
			t.Errorf("client %d of the stopped gateway still open", i)
		}
	}

	// SIGKILL: no announcement. Until the expiry, answers are partial and
	// name the dead gateway; each within the query bound.
	g2 := c.gws[1]
	g2.p.kill()
	killed := time.Now()
	probes := c.probeCounts(killed, 250*time.Millisecond, expiryWindow+time.Second)
	// Meanwhile, a list answers partial too, within the bound.
	lr := c.ok(t, "getClientListByGroup", map[string]any{"group": "all", "limit": 100})
	var p page
	_ = json.Unmarshal(lr.Result, &p)
	if lr.Elapsed > queryBound || !p.Partial || !slices.Equal(p.Missing, []string{g2.id}) || len(p.Items) != 3 {
		t.Errorf("list right after the kill: %d items, partial %v, missing %v, in %v; want 3, partial, [%s]",
			len(p.Items), p.Partial, p.Missing, lr.Elapsed, g2.id)
	}
	gone := time.Duration(-1) // start of the first probe from which every answer was complete
	partials := 0
	for _, pr := range <-probes {
		switch {
		case pr.err != nil:
			t.Errorf("probe at %v: %v", pr.at, pr.err)
		case pr.elapsed > queryBound:
			t.Errorf("probe at %v took %v", pr.at, pr.elapsed)
		case pr.partial:
			partials++
			gone = -1
			if !slices.Equal(pr.missing, []string{g2.id}) || pr.n != 3 {
				t.Errorf("partial answer at %v: count %d, missing %v; want 3, [%s]", pr.at, pr.n, pr.missing, g2.id)
			}
		default:
			if pr.n != 3 {
				t.Errorf("complete answer at %v: count %d, want 3", pr.at, pr.n)
			}
			if gone < 0 {
				gone = pr.at
			}
		}
	}
	if gone < 0 {
		t.Fatalf("the killed gateway was still in the answers %v after the kill", expiryWindow+time.Second)
	}
	t.Logf("killed gateway %s left the answers %v after SIGKILL (%d partial answers naming it before)", g2.id, gone, partials)
	if gone > expiryWindow {
		t.Errorf("the killed gateway left the answers after %v, want ≤ %v", gone, expiryWindow)
	}
	if partials == 0 {
		t.Errorf("no partial answer naming the killed gateway before its expiry")
	}
	survivors := []int{0, 3, 6}
	if got := c.list(t, "getClientList", nil, 2); !slices.Equal(sorted(got), sorted(idsOf(cs, survivors))) {
		t.Errorf("getClientList after expiry = %v, want the clients of gateway 1", got)
	}
	if n, r := c.count(t, "getUidCount", nil); n != 3 || r.Partial {
		t.Errorf("getUidCount after expiry = %d (partial %v)", n, r.Partial)
	}
	// Nothing else disturbed: gateway 1's clients are open and served.
	for _, i := range survivors {
		w := cs[i]
		if w.isClosed() {
			t.Fatalf("client %d of gateway 1 closed: %v", i, w.closeErr)
		}
		w.send(t, "still here")
		if got := w.next(t, 10*time.Second); got != "still here" {
			t.Errorf("client %d echo: %q", i, got)
		}
	}
	c.ok(t, "sendToGroup", map[string]any{"group": "all", "message": "group"})
	for _, i := range survivors {
		if got := cs[i].next(t, 10*time.Second); got != "group" {
			t.Errorf("client %d: %q", i, got)
		}
	}

	// A new gateway joins at any time: it is in the answers as soon as it
	// has a client.
	g4 := c.startGateway(3)
	w := c.dial(t, 3, true)
	c.waitCount(t, 4, 10*time.Second)
	w.send(t, "new")
	if got := w.next(t, 10*time.Second); got != "new" {
		t.Errorf("client of the new gateway %s: echo %q", g4.id, got)
	}
}

// probe is one getClientCount answer of probeCounts.
type probe struct {
	at, elapsed time.Duration // start after the reference time; duration
	n           int
	partial     bool
	missing     []string
	err         error
}

// probeCounts starts a getClientCount every interval from since until
// since+span, each in its own goroutine, and delivers every answer, in
// the order they were started, once all are in.
func (c *cluster) probeCounts(since time.Time, interval, span time.Duration) <-chan []probe {
	out := make(chan []probe, 1)
	go func() {
		var res []probe
		var mu sync.Mutex
		var wg sync.WaitGroup
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for first := true; time.Since(since) <= span; first = false {
			if !first {
				<-tick.C
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				pr := probe{at: time.Since(since).Round(time.Millisecond)}
				r, err := c.postOK("getClientCount", nil)
				pr.elapsed, pr.partial, pr.missing, pr.err = r.Elapsed, r.Partial, r.Missing, err
				if err == nil {
					pr.n, pr.err = strconv.Atoi(string(r.Result))
				}
				mu.Lock()
				res = append(res, pr)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.SortFunc(res, func(a, b probe) int { return int(a.at - b.at) })
		out <- res
	}()
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func idsOf(cs []*wsClient, is []int) []string {
	var out []string
	for _, i := range is {
		out = append(out, cs[i].id)
	}
	return out
}

// load runs msgs messages per client, each client sending as fast as its
// echoes allow with window messages in flight, and checks that every
// client got every echo in order (a repeated earlier message, a redelivery,
// is allowed; a gap or a reorder is not). during runs once a third of the
// echoes arrived.
func echoLoad(t *testing.T, cs []*wsClient, msgs, window int, within time.Duration, during func()) {
	t.Helper()
	total := len(cs) * msgs
	var mu sync.Mutex
	got := 0
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	third := make(chan struct{})
	var thirdOnce sync.Once
	deadline := time.Now().Add(within)
	for ci, w := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next, sent, dups := 0, 0, 0
			for next < msgs {
				for sent < msgs && sent-next < window {
					w.wmu.Lock()
					_ = w.conn.SetWriteDeadline(deadline)
					err := w.conn.WriteMessage(1, []byte(strconv.Itoa(sent)))
					w.wmu.Unlock()
					if err != nil {
						errs <- fmt.Errorf("client %d: send %d: %v", ci, sent, err)
						return
					}
					sent++
				}
				var m string
				select {
				case m = <-w.in:
				case <-w.closed:
					errs <- fmt.Errorf("client %d closed after %d echoes: %v", ci, next, w.closeErr)
					return
				case <-time.After(time.Until(deadline)):
					errs <- fmt.Errorf("client %d: %d of %d echoes by the deadline", ci, next, msgs)
					return
				}
				n, err := strconv.Atoi(m)
				switch {
				case err != nil:
					errs <- fmt.Errorf("client %d: unexpected message %q", ci, m)
					return
				case n == next:
					next++
					mu.Lock()
					got++
					if got*3 >= total {
						thirdOnce.Do(func() { close(third) })
					}
					mu.Unlock()
				case n < next:
					dups++ // redelivered after a worker died
				default:
					errs <- fmt.Errorf("client %d: got %d while waiting for %d: lost or out of order", ci, n, next)
					return
				}
			}
			if dups > 0 {
				t.Logf("client %d: %d redelivered echoes", ci, dups)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-third:
		during()
	case <-done:
		t.Error("the load finished before a third of it: the fault came too late")
	}
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWorkerKilledUnderLoad kills one of two worker processes with SIGKILL
// while 30 clients on 3 gateways stream messages through the echo app: no
// event is lost and each client's echoes keep their order.
func TestWorkerKilledUnderLoad(t *testing.T) {
	c := newCluster(t, clusterOpts{workers: 2})
	var cs []*wsClient
	for i := range 30 {
		cs = append(cs, c.dial(t, 1+i%3, true))
	}
	c.waitCount(t, 30, 15*time.Second)
	start := time.Now()
	echoLoad(t, cs, 300, 16, 60*time.Second, func() {
		c.workers[0].kill()
		t.Logf("worker 0 killed %v into the load", time.Since(start).Round(time.Millisecond))
	})
	t.Logf("9000 events through 2 workers, one killed, in %v", time.Since(start).Round(time.Millisecond))
	for i, w := range cs {
		if w.isClosed() {
			t.Errorf("client %d closed: %v", i, w.closeErr)
		}
	}
}

// TestNATSNodeStopped stops the nats-server with the most connections, one
// of three, while clients stream messages: traffic goes on, every gateway,
// worker and API connection moves to the other two servers, no client is
// disconnected and the answers stay complete.
func TestNATSNodeStopped(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	var cs []*wsClient
	for i := range 12 {
		cs = append(cs, c.dial(t, 1+i%3, true))
	}
	c.waitCount(t, 12, 15*time.Second)
	conns := make([]int, natsHosts+1)
	total := 0
	victim := 1
	for k := 1; k <= natsHosts; k++ {
		conns[k] = c.natsConns(k)
		total += conns[k]
		if conns[k] > conns[victim] {
			victim = k
		}
	}
	t.Logf("bus connections per NATS node before: %v; stopping node %d", conns[1:], victim)
	echoLoad(t, cs, 300, 8, 60*time.Second, func() {
		c.nats[victim-1].stop(t, 10*time.Second)
		waitFor(t, 15*time.Second, "every bus connection on the two other nodes", func() bool {
			n := 0
			for k := 1; k <= natsHosts; k++ {
				if k != victim {
					n += c.natsConns(k)
				}
			}
			return n == total
		})
	})
	for i, w := range cs {
		if w.isClosed() {
			t.Errorf("client %d disconnected: %v", i, w.closeErr)
		}
	}
	if n, r := c.count(t, "getClientCount", nil); n != 12 || r.Partial {
		t.Errorf("getClientCount after the stop = %d (partial %v %v)", n, r.Partial, r.Missing)
	}
	c.ok(t, "sendToAll", map[string]any{"message": "after"})
	for i, w := range cs {
		if got := w.next(t, 10*time.Second); got != "after" {
			t.Errorf("client %d: %q", i, got)
		}
	}
	reconnected := 0
	for _, p := range append(c.workers, c.api, c.gws[0].p, c.gws[1].p, c.gws[2].p) {
		if strings.Contains(p.logged(), "reconnected") {
			reconnected++
		}
	}
	t.Logf("%d processes logged a bus reconnect", reconnected)
}

// natsConns returns the number of client connections of nats-server k, -1
// on error.
func (c *cluster) natsConns(k int) int {
	resp, err := c.http.Get("http://" + hostAddr(k, monitorPort) + "/connz")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1
	}
	var cz struct {
		NumConnections int `json:"num_connections"`
	}
	if json.NewDecoder(resp.Body).Decode(&cz) != nil {
		return -1
	}
	return cz.NumConnections
}
