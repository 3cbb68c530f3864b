// Package node assembles one gatework node in a process: the bus (an
// embedded nats-server, or a connection to an external NATS), a gateway
// with its client listeners, the Go API client, the HTTP server (the HTTP
// API under /api, liveness under /healthz, readiness under /readyz and
// Prometheus metrics under /metrics) and, optionally, an in-process worker
// running the given handlers.
//
// It is what `gatework start` runs, and what tests use to start a whole
// node from a plain Config:
//
//	n, err := node.Start(ctx, node.Config{
//		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{
//			{Protocol: "ws", Addr: "127.0.0.1:0"},
//		}},
//		HTTP:   node.HTTPConfig{Addr: "127.0.0.1:0"},
//		Worker: node.WorkerConfig{Handlers: &handlers},
//	})
//	...
//	defer n.Shutdown(context.Background())
//	url := "ws://" + n.Addr("ws").String() + "/"
//
// The package reads no files, environment variables or flags: package cli
// does that and passes a Config down.
package node
