package natsembed_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
	"github.com/gatework/gatework/internal/testpki"
)

// rawConnect dials url with a bare nats.go client (no retries) and opts.
func rawConnect(url string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{nats.NoReconnect(), nats.Timeout(5 * time.Second)}, opts...)...)
}

func startEmbedded(t *testing.T, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	e, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// TestEmbeddedAuth: the embedded server accepts only the generated users
// and the configured one, each with its own password, on its port and in
// process.
func TestEmbeddedAuth(t *testing.T) {
	e := startEmbedded(t, natsembed.Config{Listen: "127.0.0.1:0", User: "ops", Password: "ops-secret"})
	url := e.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("ClientURL %q", url)
	}
	wo := e.WorkerOptions("w")
	if wo.URL != url || wo.User != natsembed.WorkerUser || len(wo.Password) < 32 {
		t.Fatalf("WorkerOptions: url %q user %q password of %d chars", wo.URL, wo.User, len(wo.Password))
	}
	node := e.ConnectOptions("n")
	if node.Password == wo.Password {
		t.Fatal("the node and worker users share a password")
	}
	gw := e.GatewayOptions("g")
	if gw.URL != url || gw.User != natsembed.GatewayUser || len(gw.Password) < 32 || gw.Password == wo.Password || gw.Password == node.Password {
		t.Fatalf("GatewayOptions: url %q user %q password of %d chars (or shared)", gw.URL, gw.User, len(gw.Password))
	}
	tests := []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"no credentials", nil, false},
		{"worker, wrong password", []nats.Option{nats.UserInfo(natsembed.WorkerUser, "wrong")}, false},
		{"worker, node's password", []nats.Option{nats.UserInfo(natsembed.WorkerUser, node.Password)}, false},
		{"node, worker's password", []nats.Option{nats.UserInfo(natsembed.NodeUser, wo.Password)}, false},
		{"configured user, wrong password", []nats.Option{nats.UserInfo("ops", "wrong")}, false},
		{"unknown user", []nats.Option{nats.UserInfo("nobody", "ops-secret")}, false},
		{"a token", []nats.Option{nats.Token(wo.Password)}, false},
		{"gateway, worker's password", []nats.Option{nats.UserInfo(natsembed.GatewayUser, wo.Password)}, false},
		{"worker", []nats.Option{nats.UserInfo(natsembed.WorkerUser, wo.Password)}, true},
		{"gateway", []nats.Option{nats.UserInfo(natsembed.GatewayUser, gw.Password)}, true},
		{"node", []nats.Option{nats.UserInfo(natsembed.NodeUser, node.Password)}, true},
		{"configured user", []nats.Option{nats.UserInfo("ops", "ops-secret")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := rawConnect(url, tt.opts...)
			if !tt.ok {
				if err == nil {
					nc.Close()
					t.Fatal("connected")
				}
				if !errors.Is(err, nats.ErrAuthorization) {
					t.Fatalf("err %v, want %v", err, nats.ErrAuthorization)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
		})
	}
	nc, err := bus.Connect(node)
	if err != nil {
		t.Fatalf("ConnectOptions: %v", err)
	}
	nc.Close()
}

// TestEmbeddedZeroConfig: with no configuration the server still requires
// credentials; ConnectOptions carries them and WorkerOptions has no URL.
func TestEmbeddedZeroConfig(t *testing.T) {
	// Over net.Pipe, the refusal takes the server's write deadline (10s):
	// let the other tests run meanwhile.
	t.Parallel()
	e := startEmbedded(t, natsembed.Config{})
	if e.ClientURL() != "" || e.WorkerOptions("w").URL != "" {
		t.Fatalf("a URL without a listener: %q", e.ClientURL())
	}
	if nc, err := bus.Connect(bus.Options{InProcess: e.NATS(), Name: "nobody"}); err == nil {
		nc.Close()
		t.Fatal("in-process connection without credentials accepted")
	}
	nc, err := bus.Connect(e.ConnectOptions("node"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

func TestEmbeddedConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  natsembed.Config
		want string
	}{
		{"reserved node user", natsembed.Config{User: natsembed.NodeUser, Password: "x"}, "reserved"},
		{"reserved worker user", natsembed.Config{User: natsembed.WorkerUser, Password: "x"}, "reserved"},
		{"reserved gateway user", natsembed.Config{User: natsembed.GatewayUser, Password: "x"}, "reserved"},
		{"user without password", natsembed.Config{User: "ops"}, "no password"},
		{"password without user", natsembed.Config{Password: "x"}, "without a user"},
		{"TLS without listener", natsembed.Config{TLSCertFile: "c.pem", TLSKeyFile: "k.pem"}, "without a listener"},
		{"TLS cert without key", natsembed.Config{Listen: "127.0.0.1:0", TLSCertFile: "c.pem"}, "both"},
		{"TLS files missing", natsembed.Config{Listen: "127.0.0.1:0", TLSCertFile: "/nonexistent/c.pem", TLSKeyFile: "/nonexistent/k.pem"}, "natsembed: TLS"},
		{"bad prefix", natsembed.Config{Prefix: "a.>"}, "prefix"},
		{"role without user", natsembed.Config{UserRole: bus.RoleWorker}, "without a user"},
		{"unknown role", natsembed.Config{User: "u", Password: "secret-pw", UserRole: "admin"}, `role "admin"`},
	}
	for _, tt := range tests {
		e, err := natsembed.Start(tt.cfg)
		if err == nil {
			e.Shutdown()
			t.Errorf("%s: started", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want it to mention %q", tt.name, err, tt.want)
		}
		if tt.cfg.Password != "" && strings.Contains(err.Error(), tt.cfg.Password) {
			t.Errorf("%s: the error shows the password: %v", tt.name, err)
		}
	}
}

// TestEmbeddedTLS: a listener with a certificate of a generated CA
// accepts clients that trust the CA, refuses those that do not and those
// that do not speak TLS; in-process connections need no TLS.
func TestEmbeddedTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testpki.Write(t, dir)
	e := startEmbedded(t, natsembed.Config{Listen: "127.0.0.1:0", TLSCertFile: cert, TLSKeyFile: key})
	url := e.ClientURL()
	if !strings.HasPrefix(url, "tls://127.0.0.1:") {
		t.Fatalf("ClientURL %q, want tls://", url)
	}
	wo := e.WorkerOptions("tls-worker")

	// Untrusted certificate, then plain TCP: refused.
	if nc, err := rawConnect(url, nats.UserInfo(wo.User, wo.Password)); err == nil {
		nc.Close()
		t.Error("connected without trusting the CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted: %v, want a certificate error", err)
	}
	plain := "nats://" + strings.TrimPrefix(url, "tls://")
	if nc, err := nats.Connect(plain, nats.UserInfo(wo.User, wo.Password), nats.NoReconnect(),
		nats.Timeout(5*time.Second), nats.TLSHandshakeFirst()); err == nil {
		nc.Close()
		t.Error("connected without TLS")
	}
	// Trusted, but no password: refused after the handshake.
	if nc, err := rawConnect(url, nats.RootCAs(ca)); err == nil {
		nc.Close()
		t.Error("connected over TLS without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("TLS without credentials: %v", err)
	}

	wo.CAFile = ca
	w, err := bus.Connect(wo)
	if err != nil {
		t.Fatalf("trusted worker: %v", err)
	}
	defer w.Close()
	if !w.TLSRequired() {
		t.Error("the connection does not use TLS")
	}
	if _, err := w.TLSConnectionState(); err != nil {
		t.Errorf("TLS state: %v", err)
	}
	in, err := bus.Connect(e.ConnectOptions("in-process"))
	if err != nil {
		t.Fatalf("in-process with TLS on the listener: %v", err)
	}
	defer in.Close()
	sub, err := w.SubscribeSync("gw.hb")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := in.Publish("gw.hb", []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "over tls" {
		t.Fatalf("message over TLS: %v", err)
	}
}

// TestClientCertificate: Options' CertFile and KeyFile present a client
// certificate to a NATS server that requires one (as an external NATS
// may), and CAFile verifies the server.
func TestClientCertificate(t *testing.T) {
	ca, cert, key := testpki.Write(t, t.TempDir())
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := testbus.StartServer(t, &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT,
		TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 5,
		Username: "ext", Password: "ext-pw",
	})
	o := bus.Options{URL: srv.ClientURL(), User: "ext", Password: "ext-pw", CAFile: ca, Name: "mtls"}
	if nc, err := bus.Connect(o); err == nil {
		nc.Close()
		t.Fatal("connected without a client certificate")
	}
	o.CertFile, o.KeyFile = cert, key
	nc, err := bus.Connect(o)
	if err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	defer nc.Close()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:secret@h:4222", "nats://u:xxxxx@h:4222"},
		{"tls://tok@h:4222,nats://a:b@h2:4222", "tls://xxxxx@h:4222,nats://a:xxxxx@h2:4222"},
		{"h:4222", "h:4222"},
	}
	for _, tt := range tests {
		if got := bus.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Connect's error names the URL without the password.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = bus.Connect(bus.Options{URL: "nats://u:hunter2@" + addr})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "u:xxxxx@") {
		t.Errorf("Connect error %v: want the URL with the password hidden", err)
	}
}
