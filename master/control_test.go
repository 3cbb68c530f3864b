package master_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatework/gatework/master"
)

// TestControlSocket: a request reaches the handler and its answer comes
// back; a line that is not JSON gets an error answer; Close removes the
// socket, which then refuses calls.
func TestControlSocket(t *testing.T) {
	path := master.SocketPath(filepath.Join(t.TempDir(), "gw.pid"))
	if !strings.HasSuffix(path, "gw.sock") {
		t.Fatalf("SocketPath: %s", path)
	}
	srv, err := master.ListenControl(path, func(_ context.Context, req master.ControlRequest) master.ControlResponse {
		if req.Cmd != "status" {
			return master.ControlResponse{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
		}
		return master.ControlResponse{OK: true, Status: json.RawMessage(`{"app":"echo"}`)}
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v (want mode 0600)", st, err)
	}
	tests := []struct {
		cmd     string
		ok      bool
		status  string
		errText string
	}{
		{cmd: "status", ok: true, status: `{"app":"echo"}`},
		{cmd: "fly", errText: `unknown command "fly"`},
	}
	for _, tt := range tests {
		resp, err := master.CallControl(path, master.ControlRequest{Cmd: tt.cmd}, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tt.cmd, err)
		}
		if resp.OK != tt.ok || string(resp.Status) != tt.status || resp.Error != tt.errText {
			t.Errorf("%s: %+v", tt.cmd, resp)
		}
	}

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("not json\n")); err != nil {
		t.Fatal(err)
	}
	var resp master.ControlResponse
	if err := json.NewDecoder(c).Decode(&resp); err != nil || resp.OK || !strings.HasPrefix(resp.Error, "bad request") {
		t.Errorf("bad line: %+v, %v", resp, err)
	}
	_ = c.Close()

	srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Close left the socket: %v", err)
	}
	if _, err := master.CallControl(path, master.ControlRequest{Cmd: "status"}, time.Second); err == nil {
		t.Error("a call after Close succeeded")
	}
}

// envDialControl names a control socket the test binary, run as a child,
// calls (status) and prints the answer of.
const envDialControl = "MASTER_TEST_DIAL_CONTROL"

func dialControl(path string) int {
	resp, err := master.CallControl(path, master.ControlRequest{Cmd: "status"}, 5*time.Second)
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	b, _ := json.Marshal(resp)
	fmt.Println(string(b))
	return 0
}

// TestControlSocketPeerCheck: a process of another user that can open the
// socket (its mode loosened, as a umask of 0 would leave it for a moment
// between listen and chmod) is refused by the peer credentials check; the
// master's own user is served.
func TestControlSocketPeerCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	dir, err := os.MkdirTemp("", "gw-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := master.SocketPath(filepath.Join(dir, "gw.pid"))
	srv, err := master.ListenControl(path, func(context.Context, master.ControlRequest) master.ControlResponse {
		return master.ControlResponse{OK: true, Status: json.RawMessage(`{"secret":1}`)}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is private: run a copy from dir.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "master.test")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cred *syscall.Credential
		want string
	}{
		{"nobody", &syscall.Credential{Uid: 65534, Gid: 65534}, `forbidden: peer uid 65534`},
		{"owner", nil, `"secret":1`},
	} {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envDialControl+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tt.cred}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", tt.name, err, out)
		}
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: got %q, want it to contain %q", tt.name, out, tt.want)
		}
		if tt.cred != nil && strings.Contains(string(out), "secret") {
			t.Errorf("%s read the master's status: %q", tt.name, out)
		}
	}
}
