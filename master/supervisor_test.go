package master_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatework/gatework/internal/testwait"
	"github.com/gatework/gatework/master"
)

// envMode names a file whose content says how the test binary behaves
// when run as a child: ok (report ready, stop on SIGTERM or stdin EOF),
// fail (exit 1 at once), readyfail (report ready, then exit 1 at once), silent (never report ready) or fds (as ok, after
// a line naming the descriptors above 2 it inherited).
const envMode = "MASTER_TEST_MODE_FILE"

func TestMain(m *testing.M) {
	if f := os.Getenv(envMode); f != "" {
		os.Exit(child(f))
	}
	if p := os.Getenv(envDialControl); p != "" {
		os.Exit(dialControl(p))
	}
	goleak.VerifyTestMain(m)
}

func child(modeFile string) int {
	mode, err := os.ReadFile(modeFile)
	if err != nil {
		return 3
	}
	switch strings.TrimSpace(string(mode)) {
	case "fail":
		fmt.Fprintln(os.Stderr, "child: failing as asked")
		return 1
	case "readyfail":
		fmt.Println(master.ReadyLine)
		return 1
	case "fds":
		fmt.Println("inherited:", inherited()) // forwarded to Stderr
		fmt.Println(master.ReadyLine)
	case "ok":
		fmt.Println("hello from the app") // forwarded to Stderr
		fmt.Println(master.ReadyLine)
	}
	sc := bufio.NewScanner(os.Stdin)
	if strings.TrimSpace(string(mode)) == "handoff" {
		// The first line of stdin is the master's handoff.
		sc.Scan()
		fmt.Fprintf(os.Stderr, "child %d: handoff %q\n", os.Getpid(), sc.Text())
		fmt.Println(master.ReadyLine)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() {
		for sc.Scan() {
			if sc.Text() == master.StatsRequest {
				fmt.Printf("%s{\"pid\":%d}\n", master.StatsPrefix, os.Getpid())
			}
		}
		close(eof)
	}()
	select {
	case <-term:
	case <-eof:
	}
	return 0
}

// inherited lists the descriptors above 2 of this process that are not
// close-on-exec: in a fresh Go process, those it inherited (the runtime
// opens its own close-on-exec).
func inherited() []string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno == 0 && flags&syscall.FD_CLOEXEC == 0 {
			link, _ := os.Readlink("/proc/self/fd/" + e.Name())
			out = append(out, e.Name()+" -> "+link)
		}
	}
	return out
}

// lockedBuffer is a strings.Builder safe for concurrent writes.
type lockedBuffer struct {
	ch chan struct{}
	b  strings.Builder
}

func newBuffer() *lockedBuffer {
	l := &lockedBuffer{ch: make(chan struct{}, 1)}
	l.ch <- struct{}{}
	return l
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	<-l.ch
	defer func() { l.ch <- struct{}{} }()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	<-l.ch
	defer func() { l.ch <- struct{}{} }()
	return l.b.String()
}

type fixture struct {
	t      *testing.T
	mode   string
	sup    *master.Supervisor
	stderr *lockedBuffer
}

func setup(t *testing.T, mode string, readyTimeout time.Duration) *fixture {
	t.Helper()
	return setupHandoff(t, mode, readyTimeout, nil)
}

// setupHandoff is setup with Config.Handoff.
func setupHandoff(t *testing.T, mode string, readyTimeout time.Duration, handoff []byte) *fixture {
	t.Helper()
	return setupConfig(t, mode, master.Config{Processes: 2, Handoff: handoff, ReadyTimeout: readyTimeout})
}

// setupConfig is setup with cfg's Processes, Handoff, ReadyTimeout and
// Fail* settings.
func setupConfig(t *testing.T, mode string, cfg master.Config) *fixture {
	t.Helper()
	f := &fixture{t: t, mode: filepath.Join(t.TempDir(), "mode"), stderr: newBuffer()}
	f.setMode(mode)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sup, err := master.New(master.Config{
		Path:         exe,
		Args:         []string{"-test.run=^$"},
		Env:          append(os.Environ(), envMode+"="+f.mode),
		Processes:    cfg.Processes,
		Handoff:      cfg.Handoff,
		ReadyTimeout: cfg.ReadyTimeout,
		StopTimeout:  5 * time.Second,
		Stderr:       f.stderr,
		Logger:       slog.New(slog.NewTextHandler(f.stderr, nil)),
		Kind:         cfg.Kind,
		FailLimit:    cfg.FailLimit,
		FailWindow:   cfg.FailWindow,
		FailBackoff:  cfg.FailBackoff,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.sup = sup
	t.Cleanup(func() { _ = sup.Stop(context.Background()) })
	return f
}

func (f *fixture) setMode(mode string) {
	if err := os.WriteFile(f.mode, []byte(mode), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) pids() map[int]bool {
	ps, _ := f.sup.Status()
	m := map[int]bool{}
	for _, p := range ps {
		if p.Ready {
			m[p.PID] = true
		}
	}
	return m
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

func gone(pid int) bool { return syscall.Kill(pid, 0) != nil }

func TestStartCrashReloadStop(t *testing.T) {
	f := setup(t, "ok", 10*time.Second)
	if err := f.sup.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := f.pids()
	if len(first) != 2 {
		t.Fatalf("ready children: %v", first)
	}
	waitFor(t, 5*time.Second, "the app's output to be forwarded", func() bool {
		return strings.Count(f.stderr.String(), "hello from the app") == 2
	})

	// Stats asks every child.
	stats := f.sup.Stats(5 * time.Second)
	if len(stats) != 2 {
		t.Fatalf("stats: %v", stats)
	}
	for pid, js := range stats {
		if want := fmt.Sprintf(`{"pid":%d}`, pid); string(js) != want {
			t.Errorf("stats of %d: %s, want %s", pid, js, want)
		}
	}

	// A crash is restarted.
	var victim int
	for pid := range first {
		victim = pid
		break
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the restart", func() bool {
		p := f.pids()
		_, c := f.sup.Status()
		return len(p) == 2 && !p[victim] && c.Crashes == 1 && c.Restarts == 1
	})
	if !strings.Contains(f.stderr.String(), "worker process crashed") {
		t.Errorf("crash not logged:\n%s", f.stderr.String())
	}

	// A reload replaces every child, and the old ones exit.
	before := f.pids()
	if err := f.sup.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := f.pids()
	ps, c := f.sup.Status()
	if len(after) != 2 || c.Reloads != 1 {
		t.Fatalf("after reload: %+v %+v", ps, c)
	}
	for pid := range before {
		if after[pid] {
			t.Errorf("pid %d survived the reload", pid)
		}
		if !gone(pid) {
			t.Errorf("old pid %d still running", pid)
		}
	}
	for _, p := range ps {
		if p.Generation != 1 {
			t.Errorf("generation %d, want 1", p.Generation)
		}
	}

	// Stop ends everything and prevents restarts.
	if err := f.sup.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	for pid := range after {
		if !gone(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if err := f.sup.Reload(t.Context()); !errors.Is(err, master.ErrStopped) {
		t.Errorf("reload after stop: %v", err)
	}
}

func TestReloadFailureKeepsOld(t *testing.T) {
	tests := []struct {
		mode string
		want string
	}{
		{"fail", "exited before it was ready"},
		{"silent", "not ready within"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			// Generous: the children of Start must be ready in time
			// on a busy machine; the silent ones use it all.
			f := setup(t, "ok", 3*time.Second)
			if err := f.sup.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			old := f.pids()
			f.setMode(tt.mode)
			err := f.sup.Reload(t.Context())
			if !errors.Is(err, master.ErrNotReady) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("reload: %v", err)
			}
			if now := f.pids(); fmt.Sprint(now) != fmt.Sprint(old) {
				t.Errorf("children changed: %v, now %v", old, now)
			}
			for pid := range old {
				if gone(pid) {
					t.Errorf("old pid %d died", pid)
				}
			}
			if _, c := f.sup.Status(); c.FailedReloads != 1 || c.Reloads != 0 {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

func TestStartNotReady(t *testing.T) {
	f := setup(t, "silent", 300*time.Millisecond)
	err := f.sup.Start(t.Context())
	if !errors.Is(err, master.ErrNotReady) {
		t.Fatalf("start: %v", err)
	}
}

// TestChildrenInheritNoDescriptor: a descriptor the master holds without
// close-on-exec (such as a socket dup(2)ed by code that forgot the flag)
// does not reach the children, started or restarted.
func TestChildrenInheritNoDescriptor(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the safety net is Linux's")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	dup := -1
	_ = raw.Control(func(fd uintptr) { dup, err = syscall.Dup(int(fd)) }) // no close-on-exec
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(dup)
	f := setup(t, "fds", 10*time.Second)
	if err := f.sup.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the children's reports", func() bool {
		return strings.Count(f.stderr.String(), "inherited:") == 2
	})
	for _, l := range strings.Split(f.stderr.String(), "\n") {
		if strings.HasPrefix(l, "inherited:") && l != "inherited: []" {
			t.Errorf("a child inherited descriptors: %s (the master's dup is %d)", l, dup)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []master.Config{
		{Processes: 1},
		{Path: "/bin/true"},
	} {
		if _, err := master.New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}

// TestHandoff: every child, the restarted ones too, reads Handoff as the
// first line of its stdin; it is in neither its environment nor its
// command line. A handoff with a newline is refused.
func TestHandoff(t *testing.T) {
	if _, err := master.New(master.Config{Path: "x", Processes: 1, Handoff: []byte("a\nb")}); err == nil {
		t.Error("a handoff with a newline was accepted")
	}
	const secret = "s3cret-handoff-9f8e7d"
	f := setupHandoff(t, "handoff", 10*time.Second, []byte(secret))
	if err := f.sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pids := f.pids()
	if len(pids) != 2 {
		t.Fatalf("ready children %v", pids)
	}
	for pid := range pids {
		want := fmt.Sprintf("child %d: handoff %q", pid, secret)
		waitFor(t, 5*time.Second, want, func() bool { return strings.Contains(f.stderr.String(), want) })
		for _, file := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), secret) {
				t.Errorf("/proc/%d/%s holds the handoff", pid, file)
			}
		}
	}
	// A crashed child's replacement gets it too.
	for pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		break
	}
	waitFor(t, 10*time.Second, "a restarted child with the handoff", func() bool {
		for pid := range f.pids() {
			if !pids[pid] && strings.Contains(f.stderr.String(), fmt.Sprintf("child %d: handoff %q", pid, secret)) {
				return true
			}
		}
		return false
	})
}

// TestFailingBackoff: a child that reports ready and exits at once (the
// user process that fails) is restarted with the short back-off until it
// crashed FailLimit times within FailWindow; then it is reported failing
// (Status, Counters, an error log) and its next start waits FailBackoff.
// Start does not fail for a child that exits right after its ready line.
func TestFailingBackoff(t *testing.T) {
	f := setupConfig(t, "readyfail", master.Config{
		Processes: 1, ReadyTimeout: 10 * time.Second, Kind: "user process",
		FailLimit: 5, FailWindow: time.Minute, FailBackoff: time.Hour,
	})
	if err := f.sup.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the slot failing", func() bool {
		ps, _ := f.sup.Status()
		return len(ps) == 1 && ps[0].Failing
	})
	ps, c := f.sup.Status()
	if c.Crashes != 5 || c.Restarts != 4 || c.Failing != 1 {
		t.Errorf("counters %+v, want 5 crashes, 4 restarts, 1 failing", c)
	}
	if ps[0].LastExit != "exit status 1" || ps[0].Ready {
		t.Errorf("last exit %q, ready %t (want false: it waits for its restart)", ps[0].LastExit, ps[0].Ready)
	}
	// Backed off: no sixth start within the (short) usual back-off.
	time.Sleep(time.Second)
	if _, c := f.sup.Status(); c.Crashes != 5 {
		t.Errorf("crashes %d after the back-off started, want 5", c.Crashes)
	}
	if !strings.Contains(f.stderr.String(), "user process failing: backed off") {
		t.Errorf("no failing log in:\n%s", f.stderr.String())
	}
}
