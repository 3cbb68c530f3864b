package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/internal/testpki"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/worker"
)

// runRemoteWorker runs the echo app on a connection made with o, as a
// worker process would, until the test ends.
func runRemoteWorker(t *testing.T, n *node.Node, o bus.Options) {
	t.Helper()
	nc, err := bus.Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(nc, nil, worker.Config{Logger: testLogger(t)}, echo.Handlers())
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		nc.Close()
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Registered first, so run last: after the node's shutdown has
	// handed the close events to this worker.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
		nc.Close()
	})
}

// echoOnce checks that a WebSocket client of n gets its message back.
func echoOnce(t *testing.T, n *node.Node, msg string) {
	t.Helper()
	ws := dialWS(t, n)
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, got := readWS(t, ws); string(got) != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// TestBusAuthByDefault: with no credentials configured, the embedded NATS
// listening for worker processes refuses a raw NATS client without
// credentials or with a wrong password, so it can neither send commands
// nor receive events; the worker credentials of WorkerOptions serve a
// worker, and cannot subscribe to the events outside its queue group.
func TestBusAuthByDefault(t *testing.T) {
	n := startNode(t, worker.Handlers{}, func(c *node.Config) {
		c.Worker.Handlers = nil
		c.NATS.Listen = "127.0.0.1:0"
	})
	wo := n.WorkerOptions("remote-worker")
	if wo.URL != n.NATSURL() || !strings.HasPrefix(wo.URL, "nats://127.0.0.1:") {
		t.Fatalf("WorkerOptions URL %q, NATSURL %q", wo.URL, n.NATSURL())
	}
	if wo.User != natsembed.WorkerUser || wo.Password == "" {
		t.Fatalf("WorkerOptions without credentials: user %q", wo.User)
	}
	subj, _ := bus.NewSubjects("")
	for _, tt := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"wrong password", []nats.Option{nats.UserInfo(natsembed.WorkerUser, "guess")}},
		{"node user, empty password", []nats.Option{nats.UserInfo(natsembed.NodeUser, "")}},
		{"password as token", []nats.Option{nats.Token(wo.Password)}},
	} {
		nc, err := nats.Connect(wo.URL, append(tt.opts, nats.NoReconnect())...)
		if err == nil {
			// Show what such a client could do, then fail.
			_, serr := nc.SubscribeSync(subj.Events())
			perr := nc.Publish(subj.Cmd("any"), []byte("x"))
			nc.Close()
			t.Errorf("%s: connected (subscribe to events: %v, publish a command: %v)", tt.name, serr, perr)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", tt.name, err)
		}
		if strings.Contains(err.Error(), wo.Password) {
			t.Errorf("%s: the error shows the password", tt.name)
		}
	}

	// With the worker credentials a worker serves the clients, but a raw
	// client cannot copy the events outside the workers' queue group.
	violation := make(chan error, 4)
	raw, err := nats.Connect(wo.URL, nats.UserInfo(wo.User, wo.Password), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case violation <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	events, err := raw.SubscribeSync(subj.Events())
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	runRemoteWorker(t, n, wo)
	echoOnce(t, n, "authenticated worker")
	select {
	case err := <-violation:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("subscription outside the queue group: %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("subscription outside the queue group: no permissions violation")
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	if k, _, _ := events.Pending(); k != 0 {
		t.Errorf("the worker credentials copied %d events outside the queue group", k)
	}
	_ = events.Unsubscribe()
	waitFor(t, 5*time.Second, func() bool {
		st := n.Gateway().Stats()
		return st.Connections == 0 && st.InFlight == 0
	})
}

// TestExternalNATSCredentials: an external NATS needs credentials in the
// configuration unless InsecureNoAuth says otherwise; wrong ones fail the
// start without showing the password.
func TestExternalNATSCredentials(t *testing.T) {
	ext := testbus.Start(t, natsembed.Config{Listen: "127.0.0.1:0", User: "ops", Password: "right-pw"})
	url := ext.ClientURL()
	withCreds := "nats://ops:right-pw@" + strings.TrimPrefix(url, "nats://")
	tests := []struct {
		name    string
		nats    node.NATSConfig
		wantErr error  // nil: starts
		errText string // the error mentions it
	}{
		{"no credentials", node.NATSConfig{URL: url}, node.ErrNoBusCredentials, "nats.insecure_no_auth"},
		{"insecure_no_auth, server requires auth", node.NATSConfig{URL: url, InsecureNoAuth: true}, nats.ErrAuthorization, ""},
		{"wrong password", node.NATSConfig{URL: url, User: "ops", Password: "wrong-pw"}, nats.ErrAuthorization, ""},
		{"user and password", node.NATSConfig{URL: url, User: "ops", Password: "right-pw"}, nil, ""},
		{"credentials in the URL", node.NATSConfig{URL: withCreds}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := echo.Handlers()
			cfg := node.Config{
				Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}},
				NATS:    tt.nats,
				Worker:  node.WorkerConfig{Handlers: &h},
				Logger:  testLogger(t),
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := node.Start(ctx, cfg)
			if tt.wantErr != nil {
				if err == nil {
					_ = n.Shutdown(ctx)
					t.Fatal("started")
				}
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err %v, want %v mentioning %q", err, tt.wantErr, tt.errText)
				}
				for _, pw := range []string{"right-pw", "wrong-pw"} {
					if strings.Contains(err.Error(), pw) {
						t.Fatalf("the error shows a password: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := n.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
			}()
			if wo := n.WorkerOptions("w"); wo.URL != tt.nats.URL || wo.Password != tt.nats.Password {
				t.Errorf("WorkerOptions do not carry the external credentials: %q", bus.RedactURL(wo.URL))
			}
			echoOnce(t, n, "over the external bus")
		})
	}
}

// TestEmbeddedTLSWorker: the embedded NATS serves TLS on its listener
// with the configured certificate; WorkerOptions carry the CA, and a
// worker connected with them serves the clients.
func TestEmbeddedTLSWorker(t *testing.T) {
	ca, cert, key := testpki.Write(t, t.TempDir())
	n := startNode(t, worker.Handlers{}, func(c *node.Config) {
		c.Worker.Handlers = nil
		c.NATS.Listen = "127.0.0.1:0"
		c.NATS.TLS = node.TLSFiles{CAFile: ca, CertFile: cert, KeyFile: key}
	})
	wo := n.WorkerOptions("tls-worker")
	if !strings.HasPrefix(wo.URL, "tls://") || wo.CAFile != ca {
		t.Fatalf("WorkerOptions: URL %q, CA %q", wo.URL, wo.CAFile)
	}
	noCA := wo
	noCA.CAFile = ""
	if nc, err := bus.Connect(noCA); err == nil {
		nc.Close()
		t.Fatal("a worker that does not trust the CA connected")
	}
	runRemoteWorker(t, n, wo)
	echoOnce(t, n, "over TLS")
	waitFor(t, 5*time.Second, func() bool {
		st := n.Gateway().Stats()
		return st.Connections == 0 && st.InFlight == 0
	})
}
