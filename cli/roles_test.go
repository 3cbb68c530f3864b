package cli_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
)

func TestRoleCommandsNeedNATS(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"gateway"}, "Error: gateway: nats.url is required"},
		{[]string{"api"}, "Error: api: nats.url is required"},
		{[]string{"worker", "--app", "echo"}, "Error: worker: nats.url is required"},
		{[]string{"api", "--nats-url", "nats://u:p@127.0.0.1:1", "--http", ""}, "Error: api: http.addr is empty"},
		{[]string{"worker", "--app", "pong", "--nats-url", "nats://u:p@127.0.0.1:1"}, `worker.app: unknown app "pong"`},
		{[]string{"gateway", "--app", "echo"}, "Error: unknown flag: --app"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, errOut, err := run(t, tt.args...)
			if err == nil || !strings.Contains(errOut, tt.want) {
				t.Errorf("err %v, stderr %q; want %q", err, errOut, tt.want)
			}
		})
	}
}

// startRole runs the command line args in-process until the test's end
// (the commands started last stop first) and returns the first JSON log
// record whose msg is want, once it appears.
func startRole(t *testing.T, ctx context.Context, want string, args ...string) map[string]any {
	t.Helper()
	cmd, err := cli.NewCommand(apps...)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd.SetOut(io.Discard)
	cmd.SetErr(&logs)
	cmd.SetArgs(append(args, "--log-format", "json"))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v\n%s", args[0], err, logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop after cancel", args[0])
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rec := logLine(logs.String(), map[string]string{"msg": want}); rec != nil {
			return rec
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s returned early: %v\n%s", args[0], err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready:\n%s", args[0], logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRoles runs a gateway, an API and a worker process's commands in this
// process against one NATS with credentials: a TCP client of the gateway
// is echoed by the worker and counted by the API; the gateway's HTTP server
// answers /healthz only.
func TestRoles(t *testing.T) {
	// Shut down after the commands stopped (cleanups run last first).
	e := testbus.Start(t, natsembed.Config{Listen: "127.0.0.1:0", User: "gw", Password: "s3cret"})
	t.Setenv("GATEWORK_NATS_USER", "gw")
	t.Setenv("GATEWORK_NATS_PASSWORD", "s3cret")
	url := e.ClientURL()
	ctx := context.Background()

	// Started in this order so that the cleanups stop the gateway first:
	// its clients' close events still find a worker.
	startRole(t, ctx, "worker ready", "worker", "--app", "echo", "--nats-url", url)
	apiRec := startRole(t, ctx, "ready", "api", "--nats-url", url, "--http", "127.0.0.1:0")
	gw := startRole(t, ctx, "ready", "gateway", "--nats-url", url, "--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0")

	conn, err := net.DialTimeout("tcp", gw["listener_tcp"].(string), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("over the bus\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "over the bus\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}

	get := func(method, url string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Content-Type", "application/json") // required with no API token
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		method, url string
		status      int
		body        string
	}{
		{"GET", "http://" + gw["http"].(string) + "/healthz", 200, `{"status":"ok"}`},
		{"POST", "http://" + gw["http"].(string) + "/api/getClientCount", 404, ""},
		{"GET", "http://" + apiRec["http"].(string) + "/healthz", 200, `{"status":"ok"}`},
		{"POST", "http://" + apiRec["http"].(string) + "/api/getClientCount", 200, `{"result":1,"partial":false,"missing":[]}`},
	} {
		status, body := get(tc.method, tc.url)
		if status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s: %d %q; want %d %q", tc.method, tc.url, status, body, tc.status, tc.body)
		}
	}
	if _, ok := gw["gateway"].(string); !ok {
		t.Errorf("gateway ready line without its id: %v", gw)
	}
	if strings.Contains(gw["nats"].(string), "s3cret") {
		t.Error("password logged")
	}
}
