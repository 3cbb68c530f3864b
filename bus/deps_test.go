package bus_test

import (
	"os/exec"
	"strings"
	"testing"
)

// natsServerPkg is the import path prefix of nats-server.
const natsServerPkg = "github.com/nats-io/nats-server/"

// TestNoServerInClientPrograms: the packages a program imports to talk to
// the bus (bus, the Go client library api, worker, and cli/workerflag for
// a worker binary's flags) and the example worker binaries do not link
// nats-server; only node does, through internal/natsembed. It runs
// `go list -deps` and skips only when the go tool is missing.
func TestNoServerInClientPrograms(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	deps := func(pkg string) []string {
		t.Helper()
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	server := func(pkgs []string) (found []string) {
		for _, p := range pkgs {
			if strings.HasPrefix(p, natsServerPkg) {
				found = append(found, p)
			}
		}
		return found
	}
	// The check itself: the node does link the server.
	if len(server(deps("github.com/gatework/gatework/node"))) == 0 {
		t.Fatalf("go list -deps node shows no %s package: the check below could not fail", natsServerPkg)
	}
	for _, pkg := range []string{"bus", "api", "worker", "cli/workerflag", "examples/echo", "examples/chat"} {
		if found := server(deps("github.com/gatework/gatework/" + pkg)); len(found) > 0 {
			t.Errorf("%s links nats-server (%d packages, e.g. %s): it must only need the NATS client", pkg, len(found), found[0])
		}
	}
}
