package ops

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWorkerProcesses: answers come from a worker process, not the master;
// a worker killed with SIGKILL is restarted and the node keeps answering.
func TestWorkerProcesses(t *testing.T) {
	n := newNode(t)
	n.start()
	st := n.status()
	workers := st.workers()
	if len(workers) != 2 {
		t.Fatalf("want 2 ready workers, got %+v", st)
	}
	masterPID := n.master.Process.Pid
	c := n.dial()
	pid := c.ask("hello")
	if !workers[pid] || pid == masterPID {
		t.Fatalf("answered by pid %d; workers %v, master %d", pid, workers, masterPID)
	}
	// status reports the gateway's traffic, its rates since the previous
	// status, and the bus state of every process.
	st = n.status()
	for _, p := range st.Processes {
		if p.Role == "gateway" {
			if g := p.Gateway; g == nil || g.MessagesIn < 1 || g.MessagesOut < 1 || g.BytesIn < 5 || g.BytesOut < 5 {
				t.Errorf("gateway traffic in status: %+v", p.Gateway)
			}
			if p.Rates == nil || p.Rates.MessagesIn <= 0 {
				t.Errorf("gateway rates in status: %+v", p.Rates)
			}
		}
		if p.Role != "master" && p.Bus != "CONNECTED" {
			t.Errorf("%s %d: bus %q, want CONNECTED", p.Role, p.PID, p.Bus)
		}
	}

	// getStats (the web console's source) names the worker processes
	// with their pids and counts their events: the client's hello, which
	// went to pid (opsapp has no OnConnect: the connect event is left out).
	gs := n.getStats()
	seen := map[int]bool{}
	var events uint64
	for _, w := range gs.Workers {
		if workers[w.PID] {
			seen[w.PID] = true
			events += w.Events
			if w.StartedUnixMs <= 0 || w.RSSBytes <= 0 {
				t.Errorf("getStats worker %+v: no start time or memory", w)
			}
		}
		if w.PID == pid && w.Events < 1 {
			t.Errorf("getStats worker %+v answered hello but counts no event", w)
		}
	}
	if len(seen) != 2 || events < 1 || gs.Totals.Gateways != 1 || gs.Gateways[0].PID != masterPID {
		t.Errorf("getStats: workers %+v (want pids %v, 1 event), gateways %+v", gs.Workers, workers, gs.Gateways)
	}
	// The children's bus state and handled events come from their own
	// reports, which getStats reads from a cache it refreshes.
	waitFor(t, 15*time.Second, "getStats to show the workers' own reports", func() bool {
		gs = n.getStats()
		var handled uint64
		for _, w := range gs.Workers {
			if workers[w.PID] {
				if w.Bus != "CONNECTED" || (w.PID == pid && w.Handled < 1) {
					return false
				}
				handled += w.Handled
			}
		}
		return handled >= 1 // the hello (no connect event: see above)
	})

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the killed worker to be replaced", func() bool {
		st = n.status()
		w := st.workers()
		return len(w) == 2 && !w[pid] && st.Workers.Crashes == 1 && st.Workers.Restarts == 1
	})
	if !strings.Contains(n.logs.String(), `"msg":"worker process crashed"`) {
		t.Errorf("the crash is not logged:\n%s", n.logs.String())
	}
	w := st.workers()
	for i := range 10 {
		if got := c.ask("again " + strconv.Itoa(i)); !w[got] {
			t.Fatalf("answered by pid %d; workers %v", got, w)
		}
	}

	// SIGUSR1 reloads.
	if err := syscall.Kill(masterPID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload of SIGUSR1", func() bool {
		st = n.status()
		return st.Workers.Reloads == 1 && len(st.workers()) == 2
	})
	for pid := range st.workers() {
		if w[pid] {
			t.Errorf("worker %d survived the reload", pid)
		}
	}
	c.ask("after the reload")

	// stop ends the foreground master with exit 0; the client gets a
	// close frame.
	go func() {
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	out, errOut, code := n.run("stop")
	if code != 0 || !strings.Contains(out, "gatework stopped") {
		t.Fatalf("stop: exit %d, %q %q", code, out, errOut)
	}
	<-n.done
	if code := n.master.ProcessState.ExitCode(); code != 0 {
		t.Errorf("master exit code %d:\n%s", code, n.logs.String())
	}
	if !strings.Contains(n.logs.String(), `"msg":"gatework stopped"`) {
		t.Errorf("no stop line:\n%s", n.logs.String())
	}
}

// loadResult is what one client of runLoad saw.
type loadResult struct {
	sent, got int
	err       error
	lastPID   int // the worker process of the last reply
	// The builds (executable hashes) of the first and the last reply.
	firstBuild, lastBuild string
}

// runLoad runs clients WebSocket clients that send numbered messages
// continuously (up to 8 unanswered each) and check that every reply comes,
// in order; middle runs after 700 ms of load, then the load goes on for
// another 700 ms and every client sends "end" and waits for its answer.
func runLoad(t *testing.T, n *node, clients int, middle func()) []loadResult {
	const window = 8
	results := make([]loadResult, clients)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		c := n.dial()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			credit := make(chan struct{}, window)
			for range window {
				credit <- struct{}{}
			}
			readErr := make(chan error, 1)
			go func() {
				for want := 0; ; want++ {
					_ = c.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
					_, msg, err := c.ws.ReadMessage()
					if err != nil {
						readErr <- fmt.Errorf("after %d replies: %w", want, err)
						return
					}
					pid, build, seq := parseReply(msg)
					if seq == "end" {
						readErr <- nil
						return
					}
					if seq != strconv.Itoa(want) {
						readErr <- fmt.Errorf("reply %d is %q", want, msg)
						return
					}
					r.lastPID, r.lastBuild = pid, build
					if want == 0 {
						r.firstBuild = build
					}
					r.got = want + 1
					credit <- struct{}{}
				}
			}()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					r.sent = seq
					if err := c.ws.WriteMessage(websocket.TextMessage, []byte("end")); err != nil {
						r.err = err
						_ = c.ws.Close()
					}
					if err := <-readErr; r.err == nil {
						r.err = err
					}
					return
				case err := <-readErr:
					r.err = err
					r.sent = seq
					return
				case <-credit:
				}
				if err := c.ws.WriteMessage(websocket.TextMessage, []byte(strconv.Itoa(seq))); err != nil {
					r.err = err
					r.sent = seq
					_ = c.ws.Close()
					<-readErr
					return
				}
			}
		}()
	}
	time.Sleep(700 * time.Millisecond) // load before
	middle()
	time.Sleep(700 * time.Millisecond) // load after
	close(stop)
	wg.Wait()
	total := 0
	for i, r := range results {
		total += r.got
		if r.err != nil {
			t.Errorf("client %d: %v (sent %d, got %d)", i, r.err, r.sent, r.got)
		} else if r.got != r.sent {
			t.Errorf("client %d: sent %d, got %d", i, r.sent, r.got)
		}
	}
	t.Logf("%d clients, %d messages answered in order", clients, total)
	if total < clients*10 {
		t.Errorf("too little load: %d messages", total)
	}
	return results
}

// TestReloadUnderLoad: 20 clients send continuously while the workers are
// reloaded; none is disconnected, no reply is missing or out of order, and
// the replies after the reload come from the new workers.
func TestReloadUnderLoad(t *testing.T) {
	n := newNode(t)
	n.start()
	old := n.status().workers()
	// The new binary: the same program with a different hash, replacing
	// the file on disk as a deployment would (write, then rename).
	b, err := os.ReadFile(n.bin)
	if err != nil {
		t.Fatal(err)
	}
	oldBuild := fmt.Sprintf("%x", sha256.Sum256(b))[:8]
	b = append(b, "\nbuild 2\n"...)
	newBuild := fmt.Sprintf("%x", sha256.Sum256(b))[:8]
	if err := os.WriteFile(n.bin+".new", b, 0o755); err != nil {
		t.Fatal(err)
	}
	results := runLoad(t, n, 20, func() {
		if err := os.Rename(n.bin+".new", n.bin); err != nil {
			t.Error(err)
		}
		out, errOut, code := n.run("reload")
		if code != 0 || !strings.Contains(out, "reloaded") {
			t.Errorf("reload: exit %d, %q %q", code, out, errOut)
		}
	})
	st := n.status()
	fresh := st.workers()
	for pid := range fresh {
		if old[pid] {
			t.Errorf("worker %d was not replaced: old %v, new %v", pid, old, fresh)
		}
	}
	if st.Workers.Reloads != 1 {
		t.Errorf("reloads: %+v", st.Workers)
	}
	var handled uint64
	for _, p := range st.Processes {
		if p.Role != "worker" {
			continue
		}
		if p.Worker == nil || p.Bus != "CONNECTED" {
			t.Errorf("worker %d: no stats or bus %q", p.PID, p.Bus)
		} else {
			handled += p.Worker.Messages
		}
	}
	if handled == 0 {
		t.Error("the new workers handled no message, says status")
	}
	for i, r := range results {
		if !fresh[r.lastPID] {
			t.Errorf("client %d: last reply from pid %d, not a new worker %v", i, r.lastPID, fresh)
		}
		if r.firstBuild != oldBuild || r.lastBuild != newBuild {
			t.Errorf("client %d: first reply from build %s, last from %s; want %s then %s", i, r.firstBuild, r.lastBuild, oldBuild, newBuild)
		}
	}
}

// TestCrashUnderLoad: a worker killed with SIGKILL under load is restarted
// and no reply is lost or reordered (the gateway redelivers what the dead
// worker had in hand after gateway.event_timeout, 1s here).
func TestCrashUnderLoad(t *testing.T) {
	n := newNode(t)
	n.env = append(n.env, "GATEWORK_GATEWAY_EVENT_TIMEOUT=1s")
	n.start()
	old := n.status().workers()
	var victim int
	for pid := range old {
		victim = pid
		break
	}
	runLoad(t, n, 10, func() {
		// Stopped first, the victim keeps its place in the queue group and
		// holds, unacked, every batch routed to it until the kill (half of
		// them, at thousands a second); killed straight away it might hold
		// none (each client has one batch in flight, which the worker keeps
		// for well under a millisecond), and then nothing was redelivered
		// (seen once in 4 package runs on a busy box). Half a second is
		// under the event timeout: what it holds is redelivered after the
		// kill. (status is not asked meanwhile: it waits for the stopped
		// worker.)
		if err := syscall.Kill(victim, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 10*time.Second, "the restart", func() bool {
		st := n.status()
		w := st.workers()
		return len(w) == 2 && !w[victim] && st.Workers.Crashes == 1
	})
	if r := n.status().redelivered(); r == 0 {
		t.Error("no batch was redelivered: the killed worker had nothing in hand")
	} else {
		t.Logf("%d batches redelivered", r)
	}
}

// TestReloadBrokenBinary: when the binary on disk cannot run, reload fails,
// says so, and the old workers keep serving.
func TestReloadBrokenBinary(t *testing.T) {
	n := newNode(t)
	n.start()
	old := n.status().workers()
	if err := os.Remove(n.bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.bin, []byte("#!/bin/sh\necho broken >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := n.dial()
	c.ask("before")
	out, errOut, code := n.run("reload")
	if code != 1 || !strings.Contains(errOut, "reload failed, the old workers keep serving") {
		t.Fatalf("reload: exit %d, %q %q", code, out, errOut)
	}
	st := n.status()
	if now := st.workers(); fmt.Sprint(now) != fmt.Sprint(old) {
		t.Errorf("workers changed: %v, now %v", old, now)
	}
	if st.Workers.FailedReloads != 1 || st.Workers.Reloads != 0 {
		t.Errorf("counters: %+v", st.Workers)
	}
	for i := range 10 {
		if pid := c.ask("after " + strconv.Itoa(i)); !old[pid] {
			t.Fatalf("answered by %d, not an old worker %v", pid, old)
		}
	}
}

// TestDaemon: start -d returns once ready, a second start -d says it is
// already running, status prints a table, stop ends everything and
// stop -f kills.
func TestDaemon(t *testing.T) {
	n := newNode(t)
	logFile := n.pidFile[:len(n.pidFile)-len(".pid")] + ".log"
	args := append(startArgs[:len(startArgs):len(startArgs)], "-d")
	out, errOut, code := n.run(args...)
	if code != 0 || !strings.Contains(out, "gatework started in the background") {
		t.Fatalf("start -d: exit %d, %q %q", code, out, errOut)
	}
	pid, err := n.masterPID()
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := os.ReadFile(logFile)
	if !n.readyLine(string(logs)) {
		t.Fatalf("no ready line in %s:\n%s", logFile, logs)
	}
	c := n.dial()
	c.ask("hi")

	_, errOut, code = n.run(args...)
	if code != 1 || !strings.Contains(errOut, fmt.Sprintf("gatework is already running (pid %d", pid)) {
		t.Errorf("second start -d: exit %d, %q", code, errOut)
	}
	out, errOut, code = n.run("status")
	if code != 0 || !strings.Contains(out, "master") || strings.Count(out, "worker ") != 2 || !strings.Contains(out, "connections=1") {
		t.Errorf("status: exit %d, %q\n%s", code, errOut, out)
	}
	_ = c.ws.Close() // else the stop waits close_timeout for its close handshake

	// restart -d: a new master.
	out, errOut, code = n.run(append([]string{"restart"}, args[1:]...)...)
	if code != 0 || !strings.Contains(out, "gatework stopped") || !strings.Contains(out, "gatework started in the background") {
		t.Fatalf("restart -d: exit %d, %q %q", code, out, errOut)
	}
	if pid2, err := n.masterPID(); err != nil || pid2 == pid || running(pid) {
		t.Errorf("after restart: pid %d (%v), before %d", pid2, err, pid)
	}
	workers := n.status().workers()
	out, errOut, code = n.run("stop")
	if code != 0 || !strings.Contains(out, "gatework stopped") {
		t.Fatalf("stop: exit %d, %q %q", code, out, errOut)
	}
	for p := range workers {
		waitFor(t, 5*time.Second, "the workers to exit", func() bool { return !running(p) })
	}
	if _, err := os.Stat(n.pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
	if _, _, code := n.run("status"); code != 1 {
		t.Errorf("status of a stopped node: exit %d", code)
	}

	// stop -f
	if out, errOut, code := n.run(args...); code != 0 {
		t.Fatalf("start -d: exit %d, %q %q", code, out, errOut)
	}
	pid, _ = n.masterPID()
	workers = n.status().workers()
	out, errOut, code = n.run("stop", "-f")
	if code != 0 || !strings.Contains(out, "gatework killed") {
		t.Fatalf("stop -f: exit %d, %q %q", code, out, errOut)
	}
	for p := range workers {
		waitFor(t, 5*time.Second, "the workers to die", func() bool { return !running(p) })
	}
	if running(pid) {
		t.Errorf("master %d still alive", pid)
	}
}
