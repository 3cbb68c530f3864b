package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/webhook"
)

// GatewayStats is what the Collector reads of a gateway (*gateway.Server).
type GatewayStats interface {
	Stats() gateway.Stats
}

// APIStats is what the Collector reads of the HTTP API (*httpapi.Handler).
type APIStats interface {
	Stats() httpapi.Stats
}

// WebhookStats is what the Collector reads of a webhook worker
// (*webhook.Hook).
type WebhookStats interface {
	Stats() webhook.Stats
}

// Sources are what a Collector reads at each scrape. A nil source is
// left out of the scrape.
type Sources struct {
	Gateway GatewayStats
	API     APIStats
	// Bus is the gateway's bus connection: its state, reconnects and
	// traffic, and a round trip to the NATS server measured at each
	// scrape (bounded by RTTTimeout).
	Bus *nats.Conn
	// Webhook is the node's webhook worker (webhook mode).
	Webhook WebhookStats
	// RTTTimeout bounds the round trip; 0 means 1s. A round trip that
	// fails or times out leaves gatework_bus_rtt_seconds out.
	RTTTimeout time.Duration
}

// Collector is a prometheus.Collector of a node's metrics. It keeps no
// state: each Collect reads the sources, so it is safe for concurrent use
// and costs nothing between scrapes. A scrape takes the gateway's shard
// locks one at a time to sum the queued bytes (O(connections)) and makes
// one bus round trip.
type Collector struct {
	src Sources
}

// NewCollector returns a Collector of src.
func NewCollector(src Sources) *Collector {
	if src.RTTTimeout <= 0 {
		src.RTTTimeout = time.Second
	}
	return &Collector{src: src}
}

var _ prometheus.Collector = (*Collector)(nil)

const ns = "gatework"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
}

// The metrics. A new counter map of gateway.Stats (by policy, by limit)
// takes two lines: a Desc here (and in allDescs), and one counterMap call
// in collectGateway.
var (
	gwInfo        = desc("gateway_info", "The gateway's incarnation id (changes at each start); always 1.", "gateway")
	gwConns       = desc("gateway_connections", "Open client connections (handshake done), by listener.", "listener")
	gwAccepted    = desc("gateway_accepted_total", "Client connections accepted (handshake done), by listener.", "listener")
	gwCloses      = desc("gateway_closes_total", "Client connections closed, by close reason.", "reason")
	gwMsgsIn      = desc("gateway_messages_in_total", "Messages received from clients.")
	gwMsgsOut     = desc("gateway_messages_out_total", "Messages queued to clients.")
	gwBytesIn     = desc("gateway_bytes_in_total", "Message payload bytes received from clients.")
	gwBytesOut    = desc("gateway_bytes_out_total", "Bytes written to client sockets, framing included.")
	gwQueued      = desc("gateway_queued_bytes", "Outbound bytes queued for clients and not yet written to their sockets.")
	gwUIDs        = desc("gateway_uids", "Distinct uids bound on this gateway.")
	gwGroups      = desc("gateway_groups", "Groups with at least one member on this gateway.")
	gwBatches     = desc("gateway_event_batches_total", "Event batches published to the workers (first attempts).")
	gwRedelivered = desc("gateway_event_batches_redelivered_total", "Event batches published again (after a timed-out delivery and its back-off, after a nack or a busy nack, or to probe for a worker while parked).")
	gwTimedOut    = desc("gateway_event_deliveries_timed_out_total", "Deliveries of event batches that got neither a final ack nor progress within gateway.event_timeout.")
	gwNacked      = desc("gateway_event_deliveries_nacked_total", "Deliveries of event batches that a worker refused (nack).")
	gwBusy        = desc("gateway_event_deliveries_busy_total", "Publishes of event batches that a worker had no room for (busy nack): each goes again as the same attempt once the in-flight window has room.")
	gwWindow      = desc("gateway_event_window", "The in-flight window: the most event batches out at the workers at once (from 16 up to gateway.max_in_flight, cut when deliveries time out or a worker answers busy).")
	gwQueuedBatch = desc("gateway_event_batches_queued", "Event batches waiting at the gateway for room in the in-flight window.")
	gwDeadLetters = desc("gateway_event_batches_dead_lettered_total", "Event batches given up after gateway.max_deliveries and published on the dead-letter subject.")
	gwInFlight    = desc("gateway_event_batches_in_flight", "Event batches waiting for a worker's ack.")
	gwParked      = desc("gateway_event_batches_parked", "Event batches held because no worker is subscribed.")
	gwBadAcks     = desc("gateway_bad_acks_total", "Acks from workers that could not be used (malformed, unknown action).")
	gwBadCmds     = desc("gateway_bad_commands_total", "Bus commands to the gateway that could not be decoded.")
	gwThrottled   = desc("gateway_throttled_messages_total", "Client messages over a rate limit, by the policy applied (drop, close, force_close, close_ip, force_close_ip).", "policy")
	gwSubs        = desc("gateway_interest_subscriptions", "Uid and group subjects the gateway subscribes to (routing by interest).")
	gwWildcard    = desc("gateway_interest_wildcard", "1 when the gateway went past max_interest_subjects for that kind (uid, group) and receives every send of that kind.", "kind")
	gwSubChanges  = desc("gateway_interest_subscription_changes_total", "Subscriptions made and removed as uids and groups appear and disappear on the gateway.", "change")
	gwCmdsIn      = desc("gateway_bus_commands_received_total", "Commands the gateway received from the bus (its own subject, broadcasts, its uid and group subjects; queries not included).")
	gwDupes       = desc("gateway_routed_duplicates_total", "Copies of a routed send (to several uids or groups, or caught while the gateway swaps to a wildcard subscription) dropped because the gateway had delivered it already.")
	gwDropped     = desc("gateway_dropped_messages_total", "Outbound messages dropped at a connection's queue bound, by queue policy (drop_oldest, drop_newest; disconnect counts the message that closed the connection); pongs and heartbeat pings dropped there count too.", "policy")
	gwBusSlow     = desc("gateway_bus_slow_consumers_total", "Slow consumers the NATS client reported on the gateway's bus connection: a subscription (commands, broadcasts, queries, acks, uid and group subjects) fell behind its bound and its messages began to be dropped.")
	gwOverloaded  = desc("gateway_overloaded", "1 while the gateway's outbound backlog is past gateway.max_queued_bytes (API clients refuse new sends), else 0.")
	gwSendsRef    = desc("gateway_sends_refused_total", "Sends the gateway refused because its outbound backlog was past twice gateway.max_queued_bytes (or half its command queue).")
	gwCmdsWaiting = desc("gateway_commands_waiting", "Commands, acks, broadcasts and queries waiting in the gateway's ordered command queue.")
	gwRefused     = desc("gateway_refused_total", "Sockets refused at accept or upgrade, by cause (rate, total, per_ip, ip_table, origin, bad_handshake, handshake_timeout, tls_handshake, peers, bad_datagram, upgrade_rejected, upgrade_timeout, upgrade_busy).", "cause")
	wkBatches     = desc("worker_batches_acked_total", "Event batches acknowledged, by worker id, as seen by this gateway.", "worker")
	wkEvents      = desc("worker_events_acked_total", "Events in the batches acknowledged, by worker id, as seen by this gateway.", "worker")
	busAck        = desc("bus_event_ack_seconds", "Time from publishing an event batch to the bus to its final ack (bus both ways plus the worker's handling).")
	busConnected  = desc("bus_connected", "1 while the gateway's bus connection is connected, else 0.")
	busRTT        = desc("bus_rtt_seconds", "Round trip to the NATS server, measured at the scrape.")
	busReconnects = desc("bus_reconnects_total", "Reconnections of the gateway's bus connection.")
	busMsgsIn     = desc("bus_messages_in_total", "Messages the gateway's bus connection received.")
	busMsgsOut    = desc("bus_messages_out_total", "Messages the gateway's bus connection sent.")
	busBytesIn    = desc("bus_bytes_in_total", "Bytes the gateway's bus connection received.")
	busBytesOut   = desc("bus_bytes_out_total", "Bytes the gateway's bus connection sent.")
	httpRequests  = desc("http_requests_total", "HTTP API requests answered, by method (canonical name, listMethods, openAPI or other) and status code.", "method", "code")
	httpAuthFail  = desc("http_auth_failures_total", "HTTP requests refused by authorization, by reason (missing, wrong, scope, not_loopback, host, origin).", "reason")

	whBatches  = desc("webhook_batches_total", "Event batches of the webhook worker, by result: acked (answered and acknowledged) or failed (left to the gateway's redelivery).", "result")
	whFailures = desc("webhook_request_failures_total", "Webhook POSTs that failed, by reason: http_error (non-2xx), unreachable (transport error or timeout), bad_answer (not JSON, unknown action, too large).", "reason")
	whRetries  = desc("webhook_retries_total", "Webhook POSTs tried again.")
	whPauses   = desc("webhook_pauses_total", "Times the webhook worker left the queue group because its backend did not answer.")

	allDescs = []*prometheus.Desc{
		whBatches, whFailures, whRetries, whPauses,
		gwInfo, gwConns, gwAccepted, gwCloses, gwMsgsIn, gwMsgsOut, gwBytesIn, gwBytesOut, gwQueued,
		gwUIDs, gwGroups, gwBatches, gwRedelivered, gwTimedOut, gwNacked, gwBusy, gwDeadLetters, gwWindow, gwQueuedBatch, gwInFlight, gwParked, gwBadAcks, gwBadCmds, gwThrottled, gwRefused, gwDropped,
		gwBusSlow, gwOverloaded, gwSendsRef, gwCmdsWaiting, gwSubs, gwWildcard, gwSubChanges, gwCmdsIn, gwDupes,
		wkBatches, wkEvents, busAck, busConnected, busRTT, busReconnects,
		busMsgsIn, busMsgsOut, busBytesIn, busBytesOut, httpRequests, httpAuthFail,
	}
)

// Describe sends the descriptors of every metric the Collector can
// produce.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the sources and sends their metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Gateway != nil {
		collectGateway(ch, c.src.Gateway.Stats())
	}
	if c.src.Bus != nil {
		c.collectBus(ch)
	}
	if c.src.API != nil {
		collectAPI(ch, c.src.API.Stats())
	}
	if c.src.Webhook != nil {
		st := c.src.Webhook.Stats()
		counter(ch, whBatches, st.Acked, "acked")
		counter(ch, whBatches, st.Failed, "failed")
		counter(ch, whFailures, st.HTTPErrors, "http_error")
		counter(ch, whFailures, st.Unreachable, "unreachable")
		counter(ch, whFailures, st.BadAnswers, "bad_answer")
		counter(ch, whRetries, st.Retries)
		counter(ch, whPauses, st.Pauses)
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// counterMap sends one counter per key of m, the key as the only label.
func counterMap(ch chan<- prometheus.Metric, d *prometheus.Desc, m map[string]uint64) {
	for k, v := range m {
		counter(ch, d, v, k)
	}
}

func collectGateway(ch chan<- prometheus.Metric, st gateway.Stats) {
	gauge(ch, gwInfo, 1, st.Gateway)
	for name, l := range st.Listeners {
		gauge(ch, gwConns, float64(l.Connections), name)
		counter(ch, gwAccepted, l.Accepted, name)
	}
	counterMap(ch, gwCloses, st.Closes)
	counterMap(ch, gwThrottled, st.Throttled)
	counterMap(ch, gwRefused, st.Refused)
	counterMap(ch, gwDropped, st.Dropped)
	gauge(ch, gwSubs, float64(st.Interest.Subscriptions))
	gauge(ch, gwWildcard, b2f(st.Interest.WildcardUIDs), "uid")
	gauge(ch, gwWildcard, b2f(st.Interest.WildcardGroups), "group")
	counterMap(ch, gwSubChanges, map[string]uint64{"subscribe": st.Interest.Subscribes, "unsubscribe": st.Interest.Unsubscribes})
	counter(ch, gwCmdsIn, st.Interest.Received)
	counter(ch, gwDupes, st.Interest.Duplicates)
	counter(ch, gwMsgsIn, st.MessagesIn)
	counter(ch, gwMsgsOut, st.MessagesOut)
	counter(ch, gwBytesIn, st.BytesIn)
	counter(ch, gwBytesOut, st.BytesOut)
	gauge(ch, gwQueued, float64(st.QueuedBytes))
	gauge(ch, gwUIDs, float64(st.UIDs))
	gauge(ch, gwGroups, float64(st.Groups))
	counter(ch, gwBatches, st.EventsSent)
	counter(ch, gwRedelivered, st.Redelivered)
	counter(ch, gwTimedOut, st.TimedOut)
	counter(ch, gwNacked, st.Nacked)
	counter(ch, gwBusy, st.Busy)
	counter(ch, gwDeadLetters, st.DeadLettered)
	gauge(ch, gwWindow, float64(st.Window))
	gauge(ch, gwQueuedBatch, float64(st.Queued))
	gauge(ch, gwInFlight, float64(st.InFlight))
	gauge(ch, gwParked, float64(st.Parked))
	counter(ch, gwBadAcks, st.BadAcks)
	counter(ch, gwBadCmds, st.BadCommands)
	counter(ch, gwBusSlow, st.BusSlowConsumers)
	overloaded := 0.0
	if st.Overloaded {
		overloaded = 1
	}
	gauge(ch, gwOverloaded, overloaded)
	counter(ch, gwSendsRef, st.SendsRefused)
	gauge(ch, gwCmdsWaiting, float64(st.CommandsWaiting))
	for id, w := range st.Workers {
		counter(ch, wkBatches, w.Batches, id)
		counter(ch, wkEvents, w.Events, id)
	}
	ch <- histogram(busAck, st.AckLatency)
}

// histogram turns a gateway latency snapshot into a Prometheus histogram
// (cumulative buckets).
func histogram(d *prometheus.Desc, h gateway.LatencyHistogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(gateway.LatencyBounds))
	var cum uint64
	for i, bound := range gateway.LatencyBounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[bound] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.SumSeconds, buckets)
}

func (c *Collector) collectBus(ch chan<- prometheus.Metric) {
	nc := c.src.Bus
	connected := nc.IsConnected()
	up := 0.0
	if connected {
		up = 1
	}
	gauge(ch, busConnected, up)
	st := nc.Stats()
	counter(ch, busReconnects, st.Reconnects)
	counter(ch, busMsgsIn, st.InMsgs)
	counter(ch, busMsgsOut, st.OutMsgs)
	counter(ch, busBytesIn, st.InBytes)
	counter(ch, busBytesOut, st.OutBytes)
	if !connected {
		return
	}
	start := time.Now()
	if err := nc.FlushTimeout(c.src.RTTTimeout); err == nil {
		gauge(ch, busRTT, time.Since(start).Seconds())
	}
}

func collectAPI(ch chan<- prometheus.Metric, st httpapi.Stats) {
	for call, n := range st.Calls {
		counter(ch, httpRequests, n, call.Method, strconv.Itoa(call.Status))
	}
	counterMap(ch, httpAuthFail, st.AuthFailures)
}

// Handler returns the /metrics handler: a registry with a Collector of src
// and the standard Go runtime and process collectors (go_*, process_*),
// in the Prometheus text or OpenMetrics format as the scraper asks.
// Errors of a scrape are answered as HTTP 500.
func Handler(src Sources) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
