//go:build linux

package ops

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWorkersInheritNoClientSockets: worker processes started while
// WebSocket and TCP clients are connected (by a reload, and by the restart
// of a crashed worker) hold none of the master's sockets, epolls or
// eventfds; once the clients leave, the master is idle (it spun on an epoll
// entry for a socket still open in a worker) and new clients are served.
func TestWorkersInheritNoClientSockets(t *testing.T) {
	n := newNode(t)
	n.start()
	masterPID := n.master.Process.Pid
	tcpAddr := n.tcpAddr()
	var wsClients []*client
	for i := range 10 {
		c := n.dial()
		c.ask("before " + strconv.Itoa(i))
		wsClients = append(wsClients, c)
	}
	var tcpClients []*tcpClient
	for i := range 4 {
		c := dialTCP(t, tcpAddr)
		c.ask("before " + strconv.Itoa(i))
		tcpClients = append(tcpClients, c)
	}

	// New workers while the clients are connected: a reload, then the
	// restart of a crashed one.
	if out, errOut, code := n.run("reload"); code != 0 {
		t.Fatalf("reload: exit %d, %q %q", code, out, errOut)
	}
	var victim int
	for pid := range n.status().workers() {
		victim = pid
		break
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var workers map[int]bool
	waitFor(t, 10*time.Second, "the crashed worker's restart", func() bool {
		st := n.status()
		workers = st.workers()
		return len(workers) == 2 && !workers[victim] && st.Workers.Restarts == 1
	})
	for pid := range workers {
		if shared := sharedFDs(t, masterPID, pid); len(shared) > 0 {
			slices.Sort(shared)
			t.Errorf("worker %d holds the master's descriptors: %s", pid, strings.Join(shared, ", "))
		}
	}

	// Whatever the master opens after its last child started (these
	// clients' sockets) is close-on-exec too: the next child would
	// inherit it otherwise.
	late := n.dial()
	late.ask("late")
	wsClients = append(wsClients, late)
	lateTCP := dialTCP(t, tcpAddr)
	lateTCP.ask("late")
	tcpClients = append(tcpClients, lateTCP)
	for fd, link := range fdLinks(t, masterPID) {
		if fd > 2 && !cloexec(t, masterPID, fd) {
			t.Errorf("the master's descriptor %d (%s) is not close-on-exec", fd, link)
		}
	}

	for _, c := range wsClients {
		_ = c.ws.Close()
	}
	for _, c := range tcpClients {
		_ = c.Close()
	}
	waitFor(t, 10*time.Second, "the clients' closes to reach the gateway", func() bool {
		return n.status().connections() == 0
	})
	busy := cpuTicks(t, masterPID, time.Second)
	if busy > 25 {
		t.Errorf("the master is busy with no client: %d ticks of CPU in 1s", busy)
	}
	t.Logf("the master used %d ticks of CPU in 1s with no client", busy)
	for i := range 5 {
		c := n.dial() // fails without a 101
		c.ask("after " + strconv.Itoa(i))
		_ = c.ws.Close()
	}
	c := dialTCP(t, tcpAddr)
	c.ask("after")
}

// sharedFDs returns the sockets and anonymous inodes (epoll, eventfd) of
// process worker that are open files of process master, as "fd -> link".
// Sockets are told apart by inode; anonymous inodes all share one, so
// kcmp(2) compares the open files, or, where kcmp is not available, an
// anonymous inode the worker holds without close-on-exec counts as
// inherited (the Go runtime opens its own close-on-exec).
func sharedFDs(t *testing.T, master, worker int) []string {
	t.Helper()
	masterFDs := fdLinks(t, master)
	sockets := map[string]bool{}
	var anon []int
	for fd, link := range masterFDs {
		switch {
		case fd <= 2:
		case strings.HasPrefix(link, "socket:"):
			sockets[link] = true
		case strings.HasPrefix(link, "anon_inode:"):
			anon = append(anon, fd)
		}
	}
	var shared []string
	for fd, link := range fdLinks(t, worker) {
		switch {
		case fd <= 2:
			continue
		case sockets[link]:
			shared = append(shared, strconv.Itoa(fd)+" -> "+link)
			continue
		case !strings.HasPrefix(link, "anon_inode:"):
			continue
		}
		for _, mfd := range anon {
			same, err := sameFile(master, worker, mfd, fd)
			if err != nil {
				if !cloexec(t, worker, fd) {
					shared = append(shared, strconv.Itoa(fd)+" -> "+link+" (not close-on-exec)")
				}
				break
			}
			if same {
				shared = append(shared, strconv.Itoa(fd)+" -> "+link)
				break
			}
		}
	}
	return shared
}

// fdLinks returns the open descriptors of process pid and what they point
// to.
func fdLinks(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	links := make(map[int]string, len(entries))
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(dir + e.Name()); err == nil {
			links[fd] = link
		}
	}
	return links
}

// sameFile reports whether descriptor fd1 of pid1 and fd2 of pid2 are the
// same open file (kcmp(2), KCMP_FILE).
func sameFile(pid1, pid2, fd1, fd2 int) (bool, error) {
	const kcmpFile = 0
	r, _, e := syscall.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), kcmpFile, uintptr(fd1), uintptr(fd2), 0)
	if e != 0 {
		return false, e
	}
	return r == 0, nil
}

// cloexec reports whether descriptor fd of process pid is close-on-exec,
// from its fdinfo flags (octal).
func cloexec(t *testing.T, pid, fd int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return true // closed meanwhile
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			return err == nil && flags&unix.O_CLOEXEC != 0
		}
	}
	return false
}

// cpuTicks returns the CPU time (user and system, in clock ticks) process
// pid uses over d.
func cpuTicks(t *testing.T, pid int, d time.Duration) uint64 {
	t.Helper()
	read := func() uint64 {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// After "pid (comm) ": state is field 3, utime 14, stime 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		utime, err1 := strconv.ParseUint(f[11], 10, 64)
		stime, err2 := strconv.ParseUint(f[12], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		return utime + stime
	}
	before := read()
	time.Sleep(d)
	return read() - before
}

// connections returns the clients connected to the node's gateway.
func (s status) connections() int {
	total := 0
	for _, p := range s.Processes {
		if p.Connections != nil {
			total += *p.Connections
		}
	}
	return total
}

// tcpAddr returns the address of the node's TCP listener, from its ready
// log line ("nc host port").
func (n *node) tcpAddr() string {
	n.t.Helper()
	for _, l := range strings.Split(n.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) != nil || rec["msg"] != "gatework ready, try" {
			continue
		}
		nc, _ := rec["tcp"].(string)
		if f := strings.Fields(nc); len(f) == 3 {
			return net.JoinHostPort(f[1], f[2])
		}
	}
	n.t.Fatalf("no tcp listener in the ready line:\n%s", n.logs.String())
	return ""
}

// tcpClient is a TCP client of the pid app (line framing).
type tcpClient struct {
	net.Conn
	t  *testing.T
	rd *bufio.Reader
}

func dialTCP(t *testing.T, addr string) *tcpClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &tcpClient{Conn: c, t: t, rd: bufio.NewReader(c)}
}

// ask sends msg as a line and checks the answer.
func (c *tcpClient) ask(msg string) {
	c.t.Helper()
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		c.t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.rd.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reply to %q: %v", msg, err)
	}
	if _, _, rest := parseReply([]byte(strings.TrimSuffix(line, "\n"))); rest != msg {
		c.t.Fatalf("reply to %q: %q", msg, line)
	}
}
