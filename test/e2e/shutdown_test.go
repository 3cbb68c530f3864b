package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestGracefulShutdown: Node.Shutdown closes every client, WebSocket ones
// with close code 1001 (going away), and returns only after the worker
// handled their close events, which still carry the uid. The worker runs
// in the node's process (OnClose records in memory) or in another process
// (OnClose appends to a file before the event is acknowledged).
func TestGracefulShutdown(t *testing.T) {
	for _, mode := range []string{"inproc", "process"} {
		t.Run(mode, func(t *testing.T) {
			var mu sync.Mutex
			var recorded []testapp.Closed
			var closeLog string
			cc := clusterConfig{}
			if mode == "inproc" {
				cc.app = &testapp.Config{OnClose: func(c testapp.Closed) {
					mu.Lock()
					defer mu.Unlock()
					recorded = append(recorded, c)
				}}
			} else {
				cc.processes = true
			}
			cl := startCluster(t, cc)
			if mode == "process" {
				closeLog = filepath.Join(t.TempDir(), "closes.jsonl")
				cl.startWorker(t, "-closelog", closeLog)
			}
			cs := make([]*client, 10)
			for i := range cs {
				cs[i] = cl.dial(t, []string{"ws", "tcp"}[i%2])
				cs[i].send(fmt.Sprintf("/bind s%d", i))
				cs[i].who()
			}
			ctx := ctxFor(t, 30*time.Second)
			if err := cl.n.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			// Shutdown has returned: the close events were handled.
			var got []testapp.Closed
			if mode == "inproc" {
				mu.Lock()
				got = append(got, recorded...)
				mu.Unlock()
			} else {
				got = readCloseLog(t, closeLog)
			}
			byID := map[string]testapp.Closed{}
			for _, c := range got {
				if _, dup := byID[c.Client]; dup {
					t.Errorf("close event of %s handled twice", c.Client)
				}
				byID[c.Client] = c
			}
			for i, c := range cs {
				rec, ok := byID[c.id]
				if !ok {
					t.Errorf("client %s: close event not handled before Shutdown returned (%d handled)", c.id, len(got))
					continue
				}
				if rec.Reason != "shutdown" || rec.UID != fmt.Sprintf("s%d", i) {
					t.Errorf("client %s: OnClose saw %+v, want reason shutdown, uid s%d", c.id, rec, i)
				}
				f, msgs := c.expectClosed()
				if len(msgs) != 0 || f.code != closeCodeWant(c.proto, 1001) {
					t.Errorf("%s client %s: %q then %v; want close code 1001", c.proto, c.id, msgs, f)
				}
			}
			if st := cl.n.Gateway().Stats(); st.Closes["shutdown"] != uint64(len(cs)) || st.Connections != 0 {
				t.Errorf("stats after Shutdown: %+v", st)
			}
		})
	}
}

// readCloseLog reads the testworker's close log: one JSON Closed a line.
func readCloseLog(t *testing.T, path string) []testapp.Closed {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("close log: %v", err)
	}
	var out []testapp.Closed
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var c testapp.Closed
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("close log line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out
}
