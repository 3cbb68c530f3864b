//go:build cluster && linux

package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nsPrefix starts the name of every namespace the suite makes; the sweep
// removes leftovers by it.
const nsPrefix = "gwct"

// subnet is the hosts' network; host k (1-based) has subnet.k.
const subnet = "10.77.0."

// netSeq numbers the networks of one run.
var netSeq atomic.Int32

// network is a set of hosts (network namespaces) on one bridge, which lives
// in a namespace of its own: nothing is added to the root namespace.
type network struct {
	name  string // prefix of its namespaces
	hosts []string
}

// ip runs the ip command and fails the test on an error.
func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetwork makes n hosts, removed (with every process in them) when the
// test ends, even when it fails or panics.
func newNetwork(t testing.TB, n int) *network {
	t.Helper()
	nw := &network{name: fmt.Sprintf("%s%d%d", nsPrefix, os.Getpid()%1000, netSeq.Add(1))}
	sw := nw.name + "sw"
	t.Cleanup(func() { nw.remove() })
	ip(t, "netns", "add", sw)
	ip(t, "-n", sw, "link", "add", "br0", "type", "bridge")
	ip(t, "-n", sw, "link", "set", "br0", "up")
	for k := 1; k <= n; k++ {
		host := fmt.Sprintf("%sh%d", nw.name, k)
		nw.hosts = append(nw.hosts, host)
		ip(t, "netns", "add", host)
		in, out := fmt.Sprintf("gc%d", k), fmt.Sprintf("gc%dsw", k)
		ip(t, "link", "add", in, "netns", host, "type", "veth", "peer", "name", out, "netns", sw)
		ip(t, "-n", sw, "link", "set", out, "master", "br0")
		ip(t, "-n", sw, "link", "set", out, "up")
		ip(t, "-n", host, "addr", "add", fmt.Sprintf("%s%d/24", subnet, k), "dev", in)
		ip(t, "-n", host, "link", "set", in, "up")
		ip(t, "-n", host, "link", "set", "lo", "up")
	}
	return nw
}

// addr returns host k's address with port.
func hostAddr(k, port int) string { return fmt.Sprintf("%s%d:%d", subnet, k, port) }

// remove kills the processes left in the namespaces and deletes them.
func (nw *network) remove() {
	for _, h := range append(nw.hosts, nw.name+"sw") {
		removeNS(h)
	}
}

// removeNS kills every process in namespace ns and deletes it.
func removeNS(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_ = exec.Command("ip", "netns", "del", ns).Run()
}

// sweep removes the namespaces an interrupted earlier run left behind.
func sweep() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			removeNS(f[0])
		}
	}
}

// inNS runs fn on an OS thread switched into namespace ns. Sockets made by
// fn belong to ns for their whole life, whichever thread uses them later.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("own netns: %w", err)
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in ns: keep it locked so that the runtime
		// ends it with this goroutine instead of reusing it.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// dialer dials TCP from inside namespace ns.
func dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
