package e2e

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestPaginationUnderChurn walks GetClientList and GetClientListByGroup
// in pages of 7, through the Go client and over HTTP, while other
// goroutines keep connecting and closing clients: every client connected
// the whole walk appears exactly once, and no id repeats.
func TestPaginationUnderChurn(t *testing.T) {
	const room = "room"
	cl := startCluster(t, clusterConfig{app: &testapp.Config{AutoJoin: room}})
	stable := cl.dialMany(t, "mix", 40) // /who answered: each is in room
	stableIDs := idsOf(stable...)

	ctx, cancel := context.WithCancel(ctxFor(t, 50*time.Second))
	var churned atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 150; i++ {
				if churn(cl, g%2 == 0, time.Duration(i%5)*time.Millisecond) {
					churned.Add(1)
				}
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	lists := []struct {
		name string
		page func(a api.API) func(api.PageRequest) (api.Page, error)
	}{
		{"GetClientList", func(a api.API) func(api.PageRequest) (api.Page, error) {
			return func(pr api.PageRequest) (api.Page, error) { return a.GetClientList(ctx, pr) }
		}},
		{"GetClientListByGroup", func(a api.API) func(api.PageRequest) (api.Page, error) {
			return func(pr api.PageRequest) (api.Page, error) { return a.GetClientListByGroup(ctx, room, pr) }
		}},
	}
	apis := []struct {
		name string
		a    api.API
	}{{"go", cl.n.API()}, {"http", httpAPI{c: cl}}}
	sawChurner := false
	for round := range 3 {
		for _, l := range lists {
			for _, via := range apis {
				got := walk(t, l.page(via.a), 7) // ascending: no repeats
				seen := make(map[string]bool, len(got))
				for _, id := range got {
					seen[id] = true
				}
				for _, id := range stableIDs {
					if !seen[id] {
						t.Fatalf("round %d, %s via %s: stable client %s missing from %d ids", round, l.name, via.name, id, len(got))
					}
				}
				if len(got) > len(stableIDs) {
					sawChurner = true
				}
			}
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d clients came and went during the walks", churned.Load())
	if churned.Load() == 0 || !sawChurner {
		t.Fatalf("no churn seen during the walks (churned %d, seen in a walk %v)", churned.Load(), sawChurner)
	}
}

// churn connects one client (WebSocket or TCP), keeps it for stay, and
// closes it. It reports whether the connection was made. It runs on a
// goroutine other than the test's: it never fails the test.
func churn(cl *cluster, ws bool, stay time.Duration) bool {
	var closer func()
	if ws {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
		c, resp, err := d.Dial(cl.wsURL(), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return false
		}
		closer = func() { _ = c.Close() }
	} else {
		c, err := net.DialTimeout("tcp", cl.tcpAddr(), 5*time.Second)
		if err != nil {
			return false
		}
		closer = func() { _ = c.Close() }
	}
	time.Sleep(stay) // pacing: how long the client stays, not synchronization
	closer()
	return true
}
