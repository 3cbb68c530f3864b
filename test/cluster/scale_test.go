//go:build cluster && linux

package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scaleConns is the group size of TestScaleFanOut: GWCLUSTER_CONNS,
// default 2000 (the CI size; the report's figure uses 10000, which needs
// `ulimit -n 20000`).
func scaleConns(t *testing.T) int {
	s := os.Getenv("GWCLUSTER_CONNS")
	if s == "" {
		return 2000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 10 || n > 15000 {
		t.Fatalf("GWCLUSTER_CONNS=%q: want 10..15000", s)
	}
	return n
}

// TestScaleFanOut is workload W2 across hosts: a group of N connections
// (GWCLUSTER_CONNS, default 2000) spread over 1, then 2 gateway
// hosts; the HTTP API process sends a burst of 100-byte messages
// (GWCLUSTER_MSGS, default 400,000 deliveries' worth, at least 20) to the
// group from 8 concurrent callers and the test counts what the clients
// receive. It checks that every delivery arrives and logs deliveries/s.
// All processes share this machine's cores: the figure compares the two
// layouts on one machine, not the capacity of separate hosts.
func TestScaleFanOut(t *testing.T) {
	needCluster(t)
	n := scaleConns(t)
	msgs := max(20, 400000/n)
	if s := os.Getenv("GWCLUSTER_MSGS"); s != "" {
		var err error
		if msgs, err = strconv.Atoi(s); err != nil || msgs < 1 || msgs > 100000 {
			t.Fatalf("GWCLUSTER_MSGS=%q: want 1..100000", s)
		}
	}
	for _, gws := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d-gateway-hosts", gws), func(t *testing.T) {
			c := newCluster(t, clusterOpts{gateways: gws, workers: 1})
			cs := c.dialMany(t, n, gws)
			c.waitCount(t, n, 60*time.Second)
			c.joinAll(t, "bench")
			waitFor(t, 30*time.Second, "every client in the group", func() bool {
				got, r := c.count(t, "getClientCountByGroup", map[string]any{"group": "bench"})
				return got == n && !r.Partial
			})
			rate, elapsed := c.fanOut(t, cs, msgs)
			t.Logf("W2 fan-out, %d gateway host(s), %d connections, %d messages: %d deliveries in %v = %.0f deliveries/s",
				gws, n, msgs, n*msgs, elapsed.Round(time.Millisecond), rate)
		})
	}
}

// dialMany connects n clients from the client host, spread round-robin
// over the gateways of hosts 1..gws, 8 dials at a time.
func (c *cluster) dialMany(t *testing.T, n, gws int) []*wsClient {
	t.Helper()
	cs := make([]*wsClient, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				w, err := c.dialErr(1+i%gws, false)
				if err != nil {
					failed.Store(err)
					return
				}
				cs[i] = w
			}
		}()
	}
	wg.Wait()
	for _, w := range cs {
		if w != nil {
			t.Cleanup(func() { w.conn.Close() })
		}
	}
	if err, ok := failed.Load().(error); ok {
		t.Fatalf("dial: %v", err)
	}
	return cs
}

// joinAll joins every client of the cluster to group, 16 calls at a time.
func (c *cluster) joinAll(t *testing.T, group string) {
	t.Helper()
	ids := c.list(t, "getClientList", nil, 10000)
	ch := make(chan string)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if _, err := c.postOK("joinGroup", map[string]any{"client": id, "group": group}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, id := range ids {
		select {
		case ch <- id:
		case err := <-errs:
			close(ch)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(ch)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// fanOut sends msgs messages to group bench through the HTTP API from 8
// callers, waits for every delivery (bounded) and returns deliveries/s:
// deliveries over the time from the first send to the last delivery.
func (c *cluster) fanOut(t *testing.T, cs []*wsClient, msgs int) (float64, time.Duration) {
	t.Helper()
	base := int64(0)
	for _, w := range cs {
		base += w.received.Load()
	}
	body, _ := json.Marshal(map[string]any{"group": "bench", "message": strings.Repeat("x", 100)})
	start := time.Now()
	var sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Add(1) <= int64(msgs) {
				if _, err := c.postOK("sendToGroup", json.RawMessage(body)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := int64(len(cs) * msgs)
	var got int64
	last, lastAt := int64(-1), time.Now()
	deadline := time.Now().Add(120 * time.Second)
	for {
		got = -base
		for _, w := range cs {
			got += w.received.Load()
		}
		if got != last {
			last, lastAt = got, time.Now()
		}
		if got >= want || time.Since(lastAt) > 5*time.Second || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := lastAt.Sub(start)
	if got != want {
		t.Errorf("%d of %d deliveries arrived", got, want)
	}
	for i, w := range cs {
		if w.isClosed() {
			t.Errorf("client %d closed: %v", i, w.closeErr)
			break
		}
	}
	return float64(got) / elapsed.Seconds(), elapsed
}
