package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatework/gatework/test/e2e/testapp"
)

// streamAndCheck has every client send n numbered messages as fast as it
// can, then read the n echoes: each client must get exactly its own
// messages, in order, none missing, none twice. It returns the first
// problem of each client that had one. progress, if set, is called after
// each client received half of its replies.
func streamAndCheck(clients []*client, n int, progress func()) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	var half sync.WaitGroup
	half.Add(len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			halfDone := false
			defer func() {
				if !halfDone {
					half.Done()
				}
			}()
			prefix := fmt.Sprintf("c%d-", i)
			go func() {
				for k := range n {
					if err := c.write(fmt.Appendf(nil, "%s%d", prefix, k), false); err != nil {
						return // the reader reports the gap
					}
				}
			}()
			for k := range n {
				f, err := c.recv(30 * time.Second)
				if err != nil {
					errs[i] = fmt.Errorf("client %d (%s): after %d replies: %w", i, c.proto, k, err)
					return
				}
				if want := fmt.Sprintf("%s%d", prefix, k); f.kind != kindMessage || string(f.data) != want {
					errs[i] = fmt.Errorf("client %d (%s): reply %d is %v, want %q", i, c.proto, k, f, want)
					return
				}
				if k == n/2 {
					halfDone = true
					half.Done()
				}
			}
		}()
	}
	if progress != nil {
		half.Wait()
		progress()
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// TestPerClientOrder: 50 clients (ws and tcp) each send 200 numbered
// messages as fast as they can to handlers that sleep a random 0–2 ms, with
// several handlers running at once: in one in-process worker, and spread
// over two worker processes. Every client gets its replies in order, none
// missing, none duplicated.
func TestPerClientOrder(t *testing.T) {
	const clients, msgs = 50, 200
	for _, mode := range []string{"inproc", "two processes"} {
		t.Run(mode, func(t *testing.T) {
			cc := clusterConfig{}
			if mode == "inproc" {
				cc.app = &testapp.Config{Jitter: 2 * time.Millisecond}
				cc.concurrency = 8
			} else {
				cc.processes = true
			}
			cl := startCluster(t, cc)
			if mode != "inproc" {
				cl.startWorker(t, "-id", "A", "-concurrency", "4", "-jitter", "2ms")
				cl.startWorker(t, "-id", "B", "-concurrency", "4", "-jitter", "2ms")
			}
			cs := cl.dialMany(t, "mix", clients)
			start := time.Now()
			for _, err := range streamAndCheck(cs, msgs, nil) {
				t.Error(err)
			}
			st := cl.n.Gateway().Stats()
			t.Logf("%d×%d messages in %v; %d batches, %d redelivered", clients, msgs, time.Since(start), st.EventsSent, st.Redelivered)
			if st.Redelivered != 0 {
				t.Errorf("%d batches were redelivered although no worker died", st.Redelivered)
			}
			if mode != "inproc" {
				// Clients are spread over both processes.
				seen := map[string]int{}
				for _, c := range cs {
					c.send("/worker")
					seen[string(c.next().data)]++
				}
				if seen["worker A"] == 0 || seen["worker B"] == 0 {
					t.Errorf("clients served by %v, want both workers A and B", seen)
				}
			}
		})
	}
}
