package ops

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestGatewayProcesses: with gateway.processes 3 the master runs three
// gateway processes on the same WebSocket port (SO_REUSEPORT); clients
// spread over them, status and getStats count each, a query sees the
// clients of all of them; a gateway process killed with SIGKILL is
// restarted while the clients of the others keep being served.
func TestGatewayProcesses(t *testing.T) {
	n := newNode(t)
	n.env = append(n.env, "GATEWORK_GATEWAY_PROCESSES=3")
	n.start()
	gws := n.status().gateways()
	if len(gws) != 3 {
		t.Fatalf("want 3 ready gateway processes, got %v", gws)
	}
	if gws[n.master.Process.Pid] {
		t.Fatal("the master is one of the gateway processes")
	}
	const clients = 30
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = n.dial()
		if pid := cs[i].ask(fmt.Sprint("hello ", i)); pid == 0 {
			t.Fatalf("client %d: no pid in the answer", i)
		}
	}
	// Every gateway process holds some (30 clients over 3 by the hash
	// of their ports: all on two of them has a chance of 3·(2/3)^30).
	byPID := map[int]int{}
	st := n.status()
	for _, p := range st.Processes {
		if p.Role == "gateway" && p.Connections != nil {
			byPID[p.PID] = *p.Connections
		}
	}
	total := 0
	for pid, c := range byPID {
		if c == 0 {
			t.Fatalf("gateway process %d holds no client: %v", pid, byPID)
		}
		total += c
	}
	if len(byPID) != 3 || total != clients {
		t.Fatalf("connections by gateway process %v, want 3 processes and %d in all", byPID, clients)
	}
	gs := n.getStats()
	if gs.Totals.Gateways != 3 || gs.Totals.Connections != clients {
		t.Fatalf("getStats: %d gateways, %d connections; want 3 and %d", gs.Totals.Gateways, gs.Totals.Connections, clients)
	}

	// SIGKILL one of them: its clients lose their connection, the others
	// are still served; the master starts a new gateway process in its
	// slot.
	var victim int
	for pid := range byPID {
		victim = pid
		break
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for i, c := range cs {
		if err := c.try(fmt.Sprint("again ", i)); err != nil {
			lost++
		}
	}
	if lost != byPID[victim] {
		t.Fatalf("%d clients lost their connection; the killed gateway process held %d", lost, byPID[victim])
	}
	waitFor(t, 20*time.Second, "a new gateway process in the killed one's slot", func() bool {
		st := n.status()
		g := st.gateways()
		return len(g) == 3 && !g[victim] && st.Gateways.Crashes == 1 && st.Gateways.Restarts == 1
	})
	// Queries see every gateway process again: the killed one's members
	// are gone, the new one (no clients yet) answers.
	waitFor(t, 30*time.Second, "getStats over the three live gateway processes", func() bool {
		gs := n.getStats()
		return gs.Totals.Gateways == 3 && gs.Totals.Connections == clients-lost
	})
	// New clients reach every process again, the new one included.
	for i := range 30 {
		n.dial().ask(fmt.Sprint("new ", i))
	}
	waitFor(t, 10*time.Second, "the new gateway process to hold clients", func() bool {
		for _, p := range n.status().Processes {
			if p.Role == "gateway" && !byPIDHas(byPID, p.PID) && p.Connections != nil && *p.Connections > 0 {
				return true
			}
		}
		return false
	})
	// A graceful stop stops them all.
	last := n.status().gateways()
	if _, errOut, code := n.run("stop"); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the master did not stop")
	}
	for pid := range last {
		if running(pid) {
			t.Errorf("gateway process %d still running after stop", pid)
		}
	}
}

func byPIDHas(m map[int]int, pid int) bool { _, ok := m[pid]; return ok }

// gateways returns the pids of the ready gateway processes (not the
// gateway inside the master).
func (s status) gateways() map[int]bool {
	m := map[int]bool{}
	for _, p := range s.Processes {
		if p.Role == "gateway" && p.Ready != nil && *p.Ready {
			m[p.PID] = true
		}
	}
	return m
}

// try sends msg and waits for its answer; it returns the error instead of
// failing the test.
func (c *client) try(msg string) error {
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return err
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	if _, _, rest := parseReply(got); rest != msg {
		return errors.New("wrong answer " + string(got))
	}
	return nil
}
