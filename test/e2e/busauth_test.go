package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBusCredentials: worker processes without the bus credentials, or
// with wrong ones, or with the worker user posing as a gateway, cannot
// join; the clients keep being served by the worker that has them.
func TestBusCredentials(t *testing.T) {
	cl := startCluster(t, clusterConfig{processes: true})
	cl.startWorker(t)
	c := cl.dial(t, "tcp")
	c.send("before")
	c.expect("before")

	bin := testworkerBinary(t)
	wo := cl.n.WorkerOptions("testworker")
	tests := []struct {
		name string
		env  []string
		args []string
		want string // in stderr
	}{
		{"worker without credentials", nil, nil, "Authorization Violation"},
		{"worker with a wrong password", []string{"GATEWORK_NATS_USER=" + wo.User, "GATEWORK_NATS_PASSWORD=guess"}, nil, "Authorization Violation"},
		{"gateway with a wrong password", []string{"GATEWORK_NATS_USER=" + e2eUser, "GATEWORK_NATS_PASSWORD=guess"}, []string{"-gateway"}, "Authorization Violation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"-nats", cl.n.NATSURL()}, tt.args...)...)
			cmd.Env = append(withoutNATS(os.Environ()), tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("exit %v, output %q: want a failure with %q", err, out, tt.want)
			}
			if strings.Contains(string(out), "ready") {
				t.Fatalf("got ready: %q", out)
			}
		})
	}
	c.send("after")
	c.expect("after")
}

// withoutNATS drops the GATEWORK_NATS_ variables of the test's own
// environment.
func withoutNATS(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GATEWORK_NATS_") {
			out = append(out, kv)
		}
	}
	return out
}
