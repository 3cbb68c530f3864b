package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/metrics"
	"github.com/gatework/gatework/webhook"
)

type fakeGateway struct{ st gateway.Stats }

func (f fakeGateway) Stats() gateway.Stats { return f.st }

type fakeAPI struct{ st httpapi.Stats }

type fakeWebhook struct{ st webhook.Stats }

func (f fakeWebhook) Stats() webhook.Stats { return f.st }

func (f fakeAPI) Stats() httpapi.Stats { return f.st }

func sampleStats() gateway.Stats {
	counts := make([]uint64, len(gateway.LatencyBounds)+1)
	counts[0], counts[2], counts[len(gateway.LatencyBounds)] = 3, 1, 1
	return gateway.Stats{
		Gateway:     "abcdef0123",
		MessagesIn:  10,
		BytesOut:    99,
		Closes:      map[string]uint64{"client_closed": 4, "slow_consumer": 1},
		Listeners:   map[string]gateway.ListenerStats{"ws": {Connections: 2, Accepted: 6}, "tcp": {Connections: 1, Accepted: 1}},
		QueuedBytes: 512,
		Workers:     map[string]gateway.WorkerStats{"w-1": {Batches: 3, Events: 7}},
		AckLatency:  gateway.LatencyHistogram{Counts: counts, Count: 5, SumSeconds: 12.5},
	}
}

func TestCollector(t *testing.T) {
	c := metrics.NewCollector(metrics.Sources{
		Gateway: fakeGateway{sampleStats()},
		API: fakeAPI{httpapi.Stats{
			Calls:        map[httpapi.Call]uint64{{Method: "sendToAll", Status: 200}: 2, {Method: "other", Status: 404}: 1},
			AuthFailures: map[string]uint64{httpapi.AuthScope: 3},
		}},
		Webhook: fakeWebhook{webhook.Stats{Acked: 9, Failed: 2, HTTPErrors: 4, Unreachable: 1, BadAnswers: 1, Retries: 5, Pauses: 1}},
	})
	if probs, err := testutil.CollectAndLint(c); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", err, probs)
	}
	want := `
# HELP gatework_gateway_connections Open client connections (handshake done), by listener.
# TYPE gatework_gateway_connections gauge
gatework_gateway_connections{listener="tcp"} 1
gatework_gateway_connections{listener="ws"} 2
# HELP gatework_gateway_closes_total Client connections closed, by close reason.
# TYPE gatework_gateway_closes_total counter
gatework_gateway_closes_total{reason="client_closed"} 4
gatework_gateway_closes_total{reason="slow_consumer"} 1
# HELP gatework_gateway_queued_bytes Outbound bytes queued for clients and not yet written to their sockets.
# TYPE gatework_gateway_queued_bytes gauge
gatework_gateway_queued_bytes 512
# HELP gatework_worker_events_acked_total Events in the batches acknowledged, by worker id, as seen by this gateway.
# TYPE gatework_worker_events_acked_total counter
gatework_worker_events_acked_total{worker="w-1"} 7
# HELP gatework_http_requests_total HTTP API requests answered, by method (canonical name, listMethods, openAPI or other) and status code.
# TYPE gatework_http_requests_total counter
gatework_http_requests_total{code="200",method="sendToAll"} 2
gatework_http_requests_total{code="404",method="other"} 1
# HELP gatework_http_auth_failures_total HTTP requests refused by authorization, by reason (missing, wrong, scope, not_loopback, host, origin).
# TYPE gatework_http_auth_failures_total counter
gatework_http_auth_failures_total{reason="scope"} 3
# HELP gatework_webhook_batches_total Event batches of the webhook worker, by result: acked (answered and acknowledged) or failed (left to the gateway's redelivery).
# TYPE gatework_webhook_batches_total counter
gatework_webhook_batches_total{result="acked"} 9
gatework_webhook_batches_total{result="failed"} 2
# HELP gatework_webhook_request_failures_total Webhook POSTs that failed, by reason: http_error (non-2xx), unreachable (transport error or timeout), bad_answer (not JSON, unknown action, too large).
# TYPE gatework_webhook_request_failures_total counter
gatework_webhook_request_failures_total{reason="bad_answer"} 1
gatework_webhook_request_failures_total{reason="http_error"} 4
gatework_webhook_request_failures_total{reason="unreachable"} 1
# HELP gatework_bus_event_ack_seconds Time from publishing an event batch to the bus to its final ack (bus both ways plus the worker's handling).
# TYPE gatework_bus_event_ack_seconds histogram
gatework_bus_event_ack_seconds_bucket{le="0.0005"} 3
gatework_bus_event_ack_seconds_bucket{le="0.001"} 3
gatework_bus_event_ack_seconds_bucket{le="0.0025"} 4
gatework_bus_event_ack_seconds_bucket{le="0.005"} 4
gatework_bus_event_ack_seconds_bucket{le="0.01"} 4
gatework_bus_event_ack_seconds_bucket{le="0.025"} 4
gatework_bus_event_ack_seconds_bucket{le="0.05"} 4
gatework_bus_event_ack_seconds_bucket{le="0.1"} 4
gatework_bus_event_ack_seconds_bucket{le="0.25"} 4
gatework_bus_event_ack_seconds_bucket{le="0.5"} 4
gatework_bus_event_ack_seconds_bucket{le="1"} 4
gatework_bus_event_ack_seconds_bucket{le="2.5"} 4
gatework_bus_event_ack_seconds_bucket{le="5"} 4
gatework_bus_event_ack_seconds_bucket{le="10"} 4
gatework_bus_event_ack_seconds_bucket{le="+Inf"} 5
gatework_bus_event_ack_seconds_sum 12.5
gatework_bus_event_ack_seconds_count 5
`
	names := []string{"gatework_gateway_connections", "gatework_gateway_closes_total", "gatework_gateway_queued_bytes",
		"gatework_worker_events_acked_total", "gatework_http_requests_total", "gatework_http_auth_failures_total",
		"gatework_bus_event_ack_seconds", "gatework_webhook_batches_total", "gatework_webhook_request_failures_total"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Registering checks Describe against Collect.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Errorf("pedantic gather: %v", err)
	}
}

// TestNilSources: a Collector with no sources yields nothing and does not
// fail.
func TestNilSources(t *testing.T) {
	if n := testutil.CollectAndCount(metrics.NewCollector(metrics.Sources{})); n != 0 {
		t.Errorf("%d metrics from no source", n)
	}
}
