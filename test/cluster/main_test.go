//go:build cluster && linux

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatework/gatework/internal/testwait"
)

// Binaries built (or found) once per run by TestMain.
var (
	gateworkBin string
	natsBin     string
	// skipReason is set when the suite cannot run here (not root, no ip).
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	switch {
	case os.Geteuid() != 0:
		skipReason = "needs root (network namespaces)"
	default:
		if _, err := exec.LookPath("ip"); err != nil {
			skipReason = "needs the ip command (apt-get install iproute2)"
		}
	}
	if skipReason != "" {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "test/cluster: cannot run in CI:", skipReason)
			return 1
		}
		return m.Run() // every test skips
	}
	sweep()
	dir, err := os.MkdirTemp("", "gwcluster-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "test/cluster:", err)
		return 1
	}
	code := m.Run()
	sweep()
	return code
}

// buildBinaries builds gatework from this module and finds nats-server
// (PATH, then GOPATH/bin), else builds it from the module this repository
// pins (the same v2.15.2 that `go install` fetches).
func buildBinaries(dir string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	gateworkBin = filepath.Join(dir, "gatework")
	if out, err := goCmd(root, "build", "-o", gateworkBin, "./cmd/gatework"); err != nil {
		return fmt.Errorf("build gatework: %v\n%s", err, out)
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		natsBin = p
		return nil
	}
	if gp, err := goCmd(root, "env", "GOPATH"); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gp)), "bin", "nats-server")
		if _, err := os.Stat(p); err == nil {
			natsBin = p
			return nil
		}
	}
	natsBin = filepath.Join(dir, "nats-server")
	if out, err := goCmd(root, "build", "-o", natsBin, "github.com/nats-io/nats-server/v2"); err != nil {
		return fmt.Errorf("build nats-server: %v\n%s", err, out)
	}
	return nil
}

func goCmd(dir string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// needCluster skips the test when the suite cannot run here.
func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// proc is one process the test started inside a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set when done is closed
}

// startProc starts bin args inside namespace ns, its output in a log file
// of the test. It is killed (SIGKILL) when the test ends if still running,
// and, through Pdeathsig, if the test process dies.
func startProc(t *testing.T, name, ns, bin string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	// The processes are configured by their files alone: the caller's
	// GATEWORK_* variables are not passed on.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEWORK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- log of %s (last 3000 bytes):\n%s", name, tail(b, 3000))
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// running reports whether p has not exited.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the exit (bounded).
func (p *proc) kill() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// stop sends SIGTERM and waits up to d for the exit, then kills.
func (p *proc) stop(t *testing.T, d time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(d):
		p.kill()
		t.Errorf("%s did not stop within %v after SIGTERM", p.name, d)
	}
}

// logged returns the process's output so far.
func (p *proc) logged() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitFor polls cond until it holds or timeout passes (testwait.For).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}
