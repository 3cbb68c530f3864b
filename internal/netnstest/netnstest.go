// Package netnstest runs a test in a network namespace of its own, for
// tests that make network devices (a TUN device, addresses, routes): the
// test binary runs the test again under `unshare --net`, and the
// namespace ends with that process, so no test leaves a namespace or a
// device behind.
package netnstest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// envInside marks the test binary re-executed inside the new namespace.
const envInside = "GATEWORK_TEST_IN_NETNS"

// Reexec runs the calling test again in a fresh network namespace, at
// most 60 s, and reports its outcome through t (its output logged, its
// failure a failure, its skip a skip); it returns false there. In the
// re-executed test it returns true at once: the caller then does the
// work. The test is skipped when the machine has no unshare command or
// the kernel refuses the namespace.
func Reexec(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envInside) == "1" {
		return true
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("no unshare command: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--net", "--", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envInside+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unshare failed") || strings.Contains(string(out), "Operation not permitted") {
			t.Skipf("the kernel refuses a network namespace: %s", out)
		}
		t.Fatalf("in a new network namespace: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "--- SKIP") {
		t.Skipf("skipped in the network namespace:\n%s", out)
	}
	t.Logf("in a new network namespace:\n%s", out)
	return false
}
