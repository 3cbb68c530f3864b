package master_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
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
