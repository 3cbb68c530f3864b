// Package testbus is the tests' one way to run an embedded bus: an
// in-process NATS server (internal/natsembed, or a bare nats-server with
// options of its own) that stops when the test ends, and connections to
// it, closed when the test ends, made the way the programs make theirs
// (bus.Connect). A failure to start or connect fails the test.
package testbus

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
)

// Start starts an embedded NATS server with cfg (the zero Config: no
// listener, in-process connections only) and shuts it down when t ends.
func Start(t testing.TB, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	e, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatalf("testbus: start the embedded NATS: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// Conn returns a new connection to e named name, closed when t ends.
func Conn(t testing.TB, e *natsembed.Server, name string) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(e.ConnectOptions(name))
	if err != nil {
		t.Fatalf("testbus: connect %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// StartServer runs a nats-server with opts (a configuration file's, a
// cluster node's: what natsembed does not cover), logging and signal
// handling off, waits until it accepts connections and shuts it down when
// t ends.
func StartServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testbus: nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("testbus: nats-server %s not ready after 10s", opts.ServerName)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// New starts an embedded NATS server with no listener and returns one
// connection to it named name; both end with t.
func New(t testing.TB, name string) *nats.Conn {
	t.Helper()
	return Conn(t, Start(t, natsembed.Config{}), name)
}
