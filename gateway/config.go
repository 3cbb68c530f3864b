package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/codec"
	"github.com/gatework/gatework/internal/framing"
)

// Defaults of Config and ListenerConfig (docs/config.md lists them with
// their keys).
const (
	// DefaultEventTimeout is Config.EventTimeout's default.
	DefaultEventTimeout = 3 * time.Second
	// DefaultMaxBatch is Config.MaxBatch's default.
	DefaultMaxBatch = 64
	// DefaultMaxInFlight is Config.MaxInFlight's default.
	DefaultMaxInFlight = 1024
	// DefaultMaxDeliveries is Config.MaxDeliveries's default.
	DefaultMaxDeliveries = 5
	// DefaultRedeliveryBackoff is Config.RedeliveryBackoff's default.
	DefaultRedeliveryBackoff = time.Second
	// DefaultRedeliveryBackoffMax is Config.RedeliveryBackoffMax's
	// default (at least RedeliveryBackoff).
	DefaultRedeliveryBackoffMax = 30 * time.Second
	// DefaultMaxPendingEvents is Config.MaxPendingEvents's default.
	DefaultMaxPendingEvents = 1024
	// DefaultMaxPendingBytes is Config.MaxPendingBytes's default: 4 MiB.
	DefaultMaxPendingBytes = 4 << 20
	// DefaultHeartbeatInterval is Config.HeartbeatInterval's default.
	DefaultHeartbeatInterval = time.Second
	// DefaultCloseTimeout is Config.CloseTimeout's default.
	DefaultCloseTimeout = 5 * time.Second
	// DefaultHandshakeTimeout is Config.HandshakeTimeout's default.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxQueueBytes is ListenerConfig.MaxQueueBytes's default: 4 MiB.
	DefaultMaxQueueBytes = 4 << 20
	// DefaultMaxQueuedBytes is Config.MaxQueuedBytes's default: 64 MiB.
	DefaultMaxQueuedBytes = 64 << 20
	// DefaultMaxQueueDelay is Config.MaxQueueDelay's default.
	DefaultMaxQueueDelay = 500 * time.Millisecond
)

// Config configures a Server. The zero value plus one listener works; every
// field says what its zero value means.
type Config struct {
	// Prefix is the bus subject prefix; "" means bus.DefaultPrefix.
	Prefix string
	// Listeners are the client listeners; at least one.
	Listeners []ListenerConfig
	// Shards is the number of connection shards (and flusher goroutines);
	// 0 means GOMAXPROCS.
	Shards int
	// Pollers is the number of socket poller goroutines (nbio's epoll
	// loops) of each listener; 0 means GOMAXPROCS.
	Pollers int
	// NoIOUring turns batched socket writes off: each shard's flusher
	// then writes every connection with a write(2) of its own. When it is
	// false (the default) a flusher on Linux sends the frames of the
	// connections one flush finds (pings of a heartbeat sweep, a
	// fan-out, echo replies) with one io_uring_enter(2) for up to 256
	// sockets, falling back to write(2) where the kernel refuses io_uring
	// (io_uring_disabled, a seccomp filter) and for TLS and UDP sockets.
	NoIOUring bool
	// EventTimeout is how long a delivery of a batch of events may go
	// without an ack or a progress report before it has failed: the batch
	// is delivered again, to any worker, after RedeliveryBackoff; 0 means
	// 3s.
	EventTimeout time.Duration
	// MaxDeliveries bounds how many times one batch of events is
	// published to the workers, the first time included. When its last
	// delivery gets no final ack within EventTimeout, or is nacked, the
	// gateway gives up on it: it publishes a bus.DeadLetter on the
	// subject bus.Subjects.DeadLetter, logs a warning, counts it in
	// Stats.DeadLettered and goes on with the client's next events (see
	// DeadLetterPolicy). A publish answered by "no responders" (no worker
	// subscribed: the batch is parked) does not count. 0 means 5.
	MaxDeliveries int
	// RedeliveryBackoff is how long a batch whose delivery timed out
	// waits before it is published again; the wait doubles with each
	// further timeout of the batch, up to RedeliveryBackoffMax, and each
	// wait is drawn at random between half and all of that (jitter: the
	// batches that timed out together come back spread out). A progress
	// ack during the wait cancels the redelivery; a nack skips the wait.
	// 0 means 1s.
	RedeliveryBackoff time.Duration
	// RedeliveryBackoffMax caps the wait of RedeliveryBackoff; 0 means
	// 30s (or RedeliveryBackoff, if that is longer).
	RedeliveryBackoffMax time.Duration
	// MaxInFlight bounds the event batches the gateway has out at the
	// workers at once (published, neither acknowledged nor failed); more
	// wait at the gateway, in order, and cost no delivery. The bound
	// (the in-flight window) is halved, or cut to the batches still out if
	// that is less, when a delivery times out (at most once per
	// EventTimeout, not below 16), and grows back by one per final ack
	// while batches wait. Keep it below what the workers hold
	// at once (worker concurrency plus backlog, over all workers) so that
	// a burst waits here instead of being dropped by the workers and
	// redelivered. 0 means 1024.
	MaxInFlight int
	// DeadLetterPolicy is what happens to the client of a dead-lettered
	// batch: DeadLetterContinue (its later events are delivered as if
	// the batch had been acknowledged without actions) or
	// DeadLetterClose (it is also closed, gracefully, with reason
	// event_failed, WebSocket close code 1011; its later events and its
	// close event still follow). "" means DeadLetterContinue.
	DeadLetterPolicy string
	// Dispatch is how the events of clients are ordered on their way to
	// the workers: DispatchClient (each client's events in order, one
	// batch of a client at a time; clients run concurrently) or
	// DispatchUID (Swoole's dispatch_mode 5: as DispatchClient, and
	// besides, the events of all the clients of this gateway bound to one
	// uid go one batch at a time, the clients taking turns; see
	// docs/tasks.md, "Dispatch by uid"). "" means DispatchClient.
	Dispatch string
	// UIDGateLease is, under DispatchUID, how long the owner of a uid's
	// cluster gate keeps a gateway's hold of it, or its wait for it,
	// without a renewal (gateways renew every lease/4): a gateway that
	// dies blocks its uids for at most this long. 0 means
	// DefaultUIDGateLease (2s); at least 100ms. See uidgate.go.
	UIDGateLease time.Duration
	// MaxBatch is the most events sent to a worker in one batch; 0 means 64.
	MaxBatch int
	// MaxPendingEvents and MaxPendingBytes bound the events a client may
	// have waiting for a worker (for example while no worker is up). At the
	// bound the client is closed with reason event_backlog (WebSocket close
	// code 1013, "try again later"); its close event is still delivered.
	// 0 means 1024 events and 4 MiB.
	MaxPendingEvents int
	MaxPendingBytes  int
	// HeartbeatInterval is how often the gateway announces itself on the
	// bus; 0 means 1s. Peers consider it gone after 3 intervals without a
	// heartbeat (3s by default); a clean Shutdown announces that it leaves,
	// and peers drop it at once.
	HeartbeatInterval time.Duration
	// CloseTimeout bounds a graceful close (queued data flushed first) and
	// a WebSocket closing handshake; 0 means 5s.
	CloseTimeout time.Duration
	// HandshakeTimeout bounds a WebSocket upgrade: a connection whose
	// handshake is not complete this long after it was accepted is closed
	// (slow or idle clients cannot hold sockets); 0 means 10s.
	HandshakeTimeout time.Duration
	// DrainWindow spreads the close frames of Shutdown evenly over this
	// long, so that clients do not all reconnect at the same moment (lame
	// duck); 0 closes every connection at once. Shutdown's context still
	// bounds it.
	DrainWindow time.Duration
	// MaxConns bounds the sockets open at once on all listeners,
	// WebSocket upgrades in progress included; 0 means no limit. A socket
	// over it is closed right after accept (a WebSocket one answered 503
	// with Retry-After) and counted in Stats.Refused["total"].
	MaxConns int
	// MaxConnsPerIP bounds the sockets of one remote IP on all listeners
	// (answered 429, counted as "per_ip"); 0 means no limit.
	MaxConnsPerIP int
	// MaxNewConnsPerSec bounds the sockets accepted per second on all
	// listeners, in bursts of as many; a socket over it is closed at once
	// (counted as "rate"). 0 means no limit.
	MaxNewConnsPerSec int
	// IPRateLimit is the message budget of one remote IP, counted over
	// all its connections on every listener and shard; the zero value is
	// no limit. Each listener's RateLimit applies first.
	IPRateLimit RateLimit
	// MaxIPs bounds the table of remote IPs kept for MaxConnsPerIP and
	// IPRateLimit (only kept when one of them is set). An IP without open
	// sockets is dropped once its budget has refilled, or at once when a
	// new IP finds the table full; if every IP in it has open sockets, the
	// new IP's socket is refused (counted as "ip_table"). 0 means 65536.
	MaxIPs int
	// MaxGroups is the most groups one connection may be in: a JoinGroup
	// beyond it fails with invalid_request (a worker's join action is
	// dropped with a warning). It bounds the gateway's group subscriptions
	// (see docs/bus-protocol.md). 0 means DefaultMaxGroups (1024).
	MaxGroups int
	// MaxInterestSubjects bounds the uid subjects, and separately the group
	// subjects, a gateway subscribes to for routing by interest (each costs
	// about 1 KiB: a subscription in the NATS client and one in the
	// server). At the bound the gateway subscribes to every subject of
	// that kind (<prefix>.uid.* or <prefix>.grp.*) instead, drops its
	// individual subscriptions of that kind and keeps that until it stops:
	// it then receives every send to a uid (or group), as a gateway
	// without interest routing would, and delivers what is for its own
	// clients. 0 means DefaultMaxInterestSubjects (100,000).
	MaxInterestSubjects int
	// MaxQueuedBytes bounds the outbound backlog of the whole gateway:
	// the bytes queued for all its clients and not yet written to their
	// sockets, plus what the sends waiting in its command queue will
	// queue (estimated; pressure.go). Past it (or past a quarter of the
	// command queue, 16,384 commands waiting) the gateway is overloaded:
	// it says so in a heartbeat at once (bus.Heartbeat.Overloaded), and
	// API clients refuse new sends (api.ErrOverloaded, HTTP 503 with
	// Retry-After) until the backlog is under half the bound (and under
	// 8,192 commands) again. Past twice the bound (or half the command queue)
	// the gateway itself refuses the sends that still reach it (sends
	// already on their way when the heartbeat went out, or from clients
	// that ignore it): counted in Stats.SendsRefused and answered with
	// bus.ErrCodeOverloaded when the send has a reply subject. Worker
	// acks are never refused (their sends are bounded per connection by
	// max_queue_bytes). 0 means DefaultMaxQueuedBytes (64 MiB); negative
	// turns the bound off.
	MaxQueuedBytes int64
	// MaxQueueDelay bounds the same backlog in time: the time to write it
	// at the rate the gateway wrote to its clients lately. Past it the
	// gateway is overloaded as past MaxQueuedBytes (cleared under half,
	// sends refused past twice), provided the backlog is at least an
	// eighth of MaxQueuedBytes (a few clients stuck at their queue bound
	// are written at rate 0 and must not stop every send). It keeps
	// delivery latency bounded on a machine that writes slower than
	// MaxQueuedBytes assumes. 0 means DefaultMaxQueueDelay (500ms);
	// negative turns it off.
	MaxQueueDelay time.Duration
	// LocalWorkers, when set, returns the worker processes that the
	// gateway's own node runs (in-process or supervised children): the
	// gateway adds their process details (pid, memory, bus state) to its
	// answer to a stats query (bus.OpStats). It is called on the
	// gateway's bus goroutine, once per stats query: it must be quick and
	// must not call the gateway. nil means none are known; workers are
	// then reported only from their acks.
	LocalWorkers func() []bus.WorkerStats
	// Codecs are the codecs listeners may name besides "raw" and "json"
	// (ListenerConfig.Codec), by name; nil means none. Set in Go by the
	// program that runs the gateway; there is no config-file key. The
	// codecs are used from many goroutines at once.
	Codecs map[string]codec.Codec `yaml:"-"`
	// LocalProcesses, when set, returns the user processes that the
	// gateway's own node supervises, for its answer to a stats query;
	// same rules as LocalWorkers. nil means none.
	LocalProcesses func() []bus.ProcessStats
	// LocalTasks, when set, returns the task counters of the gateway's
	// node for its answer to a stats query; same rules as LocalWorkers.
	// nil means the node runs no task workers (tasks is then absent).
	LocalTasks func() *bus.TaskStats
	// ReusePort, when set, makes every listener set SO_REUSEPORT before
	// binding: several gateway processes of the same user then listen on
	// the same addresses and the kernel spreads new connections (and UDP
	// peers) over them. False means an address in use fails Start.
	ReusePort bool
	// IgnorePeerHeartbeats, when set, makes the gateway follow no other
	// gateway's heartbeats (it still sends its own): its answers to
	// queries name only itself among the live gateways (bus.Reply.Peers),
	// and API clients learn the others from the heartbeats they follow
	// themselves. For the gateway processes of a master (the master's API
	// client follows the heartbeats once for the node), so that N
	// processes cost N heartbeat deliveries a second instead of N².
	// False means the gateway follows every heartbeat.
	IgnorePeerHeartbeats bool
	// Logger receives the gateway's logs; nil means slog.Default().
	Logger *slog.Logger
}

// The values of Config.Dispatch.
const (
	DispatchClient = "client"
	DispatchUID    = "uid"
)

// The values of Config.DeadLetterPolicy.
const (
	DeadLetterContinue = "continue"
	DeadLetterClose    = "close"
)

// ListenerConfig configures one client listener.
type ListenerConfig struct {
	// Name identifies the listener in client info, logs and metrics; ""
	// means the protocol name ("ws", "tcp", "udp"), which must then be
	// unique.
	Name string `yaml:"name"`
	// Protocol is "ws" (WebSocket, RFC 6455), "tcp" or "udp" (each
	// datagram is a message; each remote address is a client, see
	// udpEngine).
	Protocol string `yaml:"protocol"`
	// Addr is host:port to listen on (port 0 picks a free port).
	Addr string `yaml:"addr"`
	// Path is the WebSocket upgrade path; "" accepts any path. ws only.
	Path string `yaml:"path"`
	// MaxMessage is the largest inbound message in bytes; 0 means 1 MiB.
	// A WebSocket client that sends more is closed with code 1009; a TCP
	// client is closed. A larger datagram closes a known UDP peer (reason
	// message_too_large) and is dropped from a new one (counted in
	// Stats.Refused["bad_datagram"]). For WebSocket compression it bounds
	// both the compressed and the inflated message.
	MaxMessage int `yaml:"max_message"`
	// MaxQueueBytes bounds the bytes queued for one connection and not yet
	// written to its socket, messages and control frames (pongs, heartbeat
	// pings) alike; what happens at the bound is QueuePolicy. 0 means 4 MiB.
	MaxQueueBytes int `yaml:"max_queue_bytes"`
	// MessageType selects WebSocket frames for outbound messages: "auto"
	// (text when the message is valid UTF-8, binary otherwise), "text"
	// (invalid UTF-8 is still sent as binary, never as broken text) or
	// "binary". "" means auto. ws only.
	MessageType string `yaml:"message_type"`
	// Framing is the message framing: on tcp any kind (default line); on
	// udp "raw" (default: the datagram is the message) or "length" (the
	// datagram holds exactly one length-prefixed frame). tcp and udp only.
	Framing framing.Config `yaml:"framing"`
	// RateLimit is the message budget of each connection of this
	// listener; the zero value is no limit. See RateLimit.
	RateLimit RateLimit `yaml:"rate_limit,omitempty"`
	// Origins is the allow-list of the Origin header of WebSocket
	// upgrades ("https://example.com", "*.example.com", "*"); a refused
	// upgrade gets HTTP 403 and is counted in Stats.Refused["origin"].
	// Empty means any origin. ws only.
	Origins []string `yaml:"origins,omitempty"`
	// TLS, when set, makes the listener speak TLS (wss://, or TCP+TLS);
	// nil means plain. See TLSConfig. Not for udp.
	TLS *TLSConfig `yaml:"tls,omitempty"`
	// QueuePolicy is what happens when a message would take a
	// connection's queue over MaxQueueBytes: "disconnect" (close it as a
	// slow consumer, WebSocket code 1008), "drop_oldest" (drop the oldest
	// whole queued messages until the new one fits) or "drop_newest" (drop
	// the new message). A pong or heartbeat ping that does not fit never
	// displaces a message: it closes the connection under disconnect and
	// is dropped under the drop policies. "" means disconnect. See
	// queue.go.
	QueuePolicy string `yaml:"queue_policy"`
	// PingInterval is how long a connection may stay quiet (nothing
	// received) before the gateway pings it, and then again every interval
	// while it stays quiet: a WebSocket ping frame, or on TCP the bytes of
	// PingData framed like a message. 0 means 25s (on TCP only when
	// PingData is set); negative turns pings off.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PingData is the application-level ping sent to a quiet TCP client
	// (GatewayWorker's pingData), framed by Framing; "" sends none. tcp only.
	PingData string `yaml:"ping_data"`
	// IdleTimeout closes a connection that received nothing (no frame of
	// any kind, pongs included; on TCP no byte) for this long, with reason
	// idle_timeout (WebSocket close code 1001). 0 means 60s on ws and off
	// on tcp (a TCP client cannot be asked to answer unless the protocol
	// has a ping), 60s on udp (a UDP peer's connection ends only this
	// way or by a close); negative turns it off. Protected connections are
	// exempt.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TCPKeepAlive sets the kernel's TCP keep-alive on every accepted
	// socket: after this long without a segment from the peer the kernel
	// probes it (every TCPKeepAlive/3, 3 probes) and closes the socket
	// when it does not answer; the client is then closed with reason
	// client_closed. It costs no work in the gateway, so with
	// ping_interval and idle_timeout turned off it is the cheapest way to
	// find dead peers when the application pings on its own (Socket.IO
	// style) or does not need to find them quickly. 0 means the default:
	// off on a listener with an idle timeout (which finds dead peers
	// itself), else Go's keep-alive (15 s); negative turns it off. ws and
	// tcp only; at least 1s.
	TCPKeepAlive time.Duration `yaml:"tcp_keepalive"`
	// MaxPeers bounds the peers (remote addresses) a UDP listener holds
	// at once; a datagram from a new peer while it is full is dropped and
	// counted in Stats.Refused["peers"] (known peers are still served).
	// 0 means DefaultMaxPeers (65536). udp only.
	MaxPeers int `yaml:"max_peers"`
	// Compression configures permessage-deflate (RFC 7692); the zero
	// value is off. ws only. See Compression.
	Compression Compression `yaml:"compression,omitempty"`
	// UpgradeHook makes the workers' OnWebSocketConnect run before the
	// 101 is written: the upgrade waits for the handler's answer (at most
	// UpgradeTimeout), a Reject answers its HTTP status (400-599) and
	// body, anything else accepts; OnConnect follows once accepted. false
	// keeps the handshake local (a Reject closes with 4000 + status after
	// the 101). ws only. See upgrade.go.
	UpgradeHook bool `yaml:"upgrade_hook"`
	// UpgradeTimeout bounds the wait for the workers with UpgradeHook:
	// without an answer the client gets HTTP 503, counted in
	// Stats.Refused["upgrade_timeout"]. 0 means 2s. ws only.
	UpgradeTimeout time.Duration `yaml:"upgrade_timeout"`
	// UpgradeMaxPending bounds the upgrades of this listener waiting for
	// the workers with UpgradeHook; one more gets HTTP 503 at once,
	// counted in Stats.Refused["upgrade_busy"]. 0 means 1024. ws only.
	UpgradeMaxPending int `yaml:"upgrade_max_pending"`
	// DelayReceive accepts and registers each connection (OnConnect
	// fires; a WebSocket's upgrade is answered) but reads nothing from it
	// until Confirm: what the client sends waits in its socket (TCP flow
	// control holds the client back). ws and tcp only.
	DelayReceive bool `yaml:"delay_receive"`
	// ConfirmTimeout closes a DelayReceive connection not confirmed this
	// long after it was registered, with reason confirm_timeout
	// (WebSocket close code 1001). 0 means 30s.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// Codec is how structured values become this listener's messages and
	// back (package codec): "raw" (bytes as sent: a structured send
	// delivers the value's JSON text, messages are not decoded), "json"
	// (messages must be JSON texts), or a name in Config.Codecs. "" means
	// raw. See docs/api.md, "Codecs".
	Codec string `yaml:"codec"`
	// DecodeError is what happens to a message that the codec cannot
	// decode: DecodeErrorClose (the client is closed with reason
	// decode_error, WebSocket close code 1007) or DecodeErrorEvent (the
	// client stays; workers get a bus.EventDecodeError with the message
	// and the codec's error instead of the message). "" means close.
	// Only with a codec other than raw.
	DecodeError string `yaml:"decode_error"`
}

// Defaults of the upgrade hook (ListenerConfig.UpgradeHook).
const (
	// DefaultUpgradeTimeout is ListenerConfig.UpgradeTimeout's default.
	DefaultUpgradeTimeout = 2 * time.Second
	// DefaultUpgradeMaxPending is ListenerConfig.UpgradeMaxPending's
	// default.
	DefaultUpgradeMaxPending = 1024
)

// DefaultConfirmTimeout is ListenerConfig.ConfirmTimeout's default.
const DefaultConfirmTimeout = 30 * time.Second

// applyDefaults sets c's zero fields to their defaults (WithDefaults).
func (c *Config) applyDefaults() { *c = c.WithDefaults() }

// WithDefaults returns c with every zero field set to its documented
// default, and each listener with ListenerConfig.WithDefaults; the
// listeners are a copy. Shards becomes GOMAXPROCS and Logger
// slog.Default(). It does not validate (New validates, then applies it);
// cli calls it so that `gatework config` shows what is used.
func (c Config) WithDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = bus.DefaultPrefix
	}
	if c.Shards <= 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	if c.EventTimeout <= 0 {
		c.EventTimeout = DefaultEventTimeout
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if c.MaxQueueDelay == 0 {
		c.MaxQueueDelay = DefaultMaxQueueDelay
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.RedeliveryBackoff <= 0 {
		c.RedeliveryBackoff = DefaultRedeliveryBackoff
	}
	if c.RedeliveryBackoffMax <= 0 {
		c.RedeliveryBackoffMax = max(DefaultRedeliveryBackoffMax, c.RedeliveryBackoff)
	}
	if c.DeadLetterPolicy == "" {
		c.DeadLetterPolicy = DeadLetterContinue
	}
	if c.UIDGateLease == 0 {
		c.UIDGateLease = DefaultUIDGateLease
	}
	if c.Dispatch == "" {
		c.Dispatch = DispatchClient
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxPendingEvents <= 0 {
		c.MaxPendingEvents = DefaultMaxPendingEvents
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxGroups <= 0 {
		c.MaxGroups = DefaultMaxGroups
	}
	if c.MaxInterestSubjects <= 0 {
		c.MaxInterestSubjects = DefaultMaxInterestSubjects
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxIPs <= 0 {
		c.MaxIPs = DefaultMaxIPs
	}
	if c.IPRateLimit.Per == 0 {
		c.IPRateLimit.Per = time.Second
	}
	if c.IPRateLimit.Policy == "" {
		c.IPRateLimit.Policy = "drop"
	}
	c.Listeners = slices.Clone(c.Listeners)
	for i := range c.Listeners {
		c.Listeners[i] = c.Listeners[i].WithDefaults()
	}
	return c
}

// WithDefaults returns l with every zero field that belongs to its
// protocol set to its documented default: name (the protocol),
// max_message, max_queue_bytes, queue_policy, ping_interval and
// idle_timeout (ws, udp, or tcp with ping_data), message_type and
// compression, upgrade_timeout and upgrade_max_pending (ws), confirm_timeout, max_peers (udp), framing (tcp and udp, its
// max_message that of the listener), the rate limit's per,
// burst and policy when it has a budget, and the TLS defaults (a copy).
// It does not validate.
func (l ListenerConfig) WithDefaults() ListenerConfig {
	if l.Name == "" {
		l.Name = l.Protocol
	}
	if l.MaxMessage <= 0 {
		l.MaxMessage = framing.DefaultMaxMessage
	}
	if l.MaxQueueBytes <= 0 {
		l.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if l.RateLimit.Messages > 0 {
		if l.RateLimit.Per == 0 {
			l.RateLimit.Per = time.Second
		}
		if l.RateLimit.Burst == 0 {
			l.RateLimit.Burst = l.RateLimit.Messages
		}
		if l.RateLimit.Policy == "" {
			l.RateLimit.Policy = "drop"
		}
	}
	if l.QueuePolicy == "" {
		l.QueuePolicy = QueueDisconnect
	}
	if l.Codec == "" {
		l.Codec = codec.Raw
	}
	if l.DecodeError == "" {
		l.DecodeError = DecodeErrorClose
	}
	l.applyHeartbeatDefaults()
	if l.ConfirmTimeout <= 0 {
		l.ConfirmTimeout = DefaultConfirmTimeout
	}
	switch l.Protocol {
	case "ws":
		if l.MessageType == "" {
			l.MessageType = "auto"
		}
		if l.Compression.Enabled {
			l.Compression = l.Compression.withDefaults()
		}
		if l.UpgradeTimeout <= 0 {
			l.UpgradeTimeout = DefaultUpgradeTimeout
		}
		if l.UpgradeMaxPending <= 0 {
			l.UpgradeMaxPending = DefaultUpgradeMaxPending
		}
	case "tcp", "udp":
		if l.Protocol == "udp" {
			if l.MaxPeers <= 0 {
				l.MaxPeers = DefaultMaxPeers
			}
			if l.Framing.Kind == "" {
				l.Framing.Kind = framing.KindRaw
			}
		}
		if l.Framing.MaxMessage <= 0 {
			l.Framing.MaxMessage = l.MaxMessage
		}
		l.Framing = l.Framing.WithDefaults()
	}
	if l.TLS != nil {
		tc := l.TLS.WithDefaults()
		l.TLS = &tc
	}
	return l
}

// Validate reports the first problem in the listener's configuration,
// naming the offending key as "listeners[i].key".
func (l ListenerConfig) validate(i int) error {
	key := func(k string) string { return fmt.Sprintf("listeners[%d].%s", i, k) }
	switch l.Protocol {
	case "ws", "tcp", "udp":
	case "":
		return fmt.Errorf("gateway: %s: missing (ws, tcp or udp)", key("protocol"))
	default:
		return fmt.Errorf("gateway: %s: unknown protocol %q (ws, tcp or udp)", key("protocol"), l.Protocol)
	}
	if err := l.validateProtocolKeys(key); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(l.Addr); err != nil {
		return fmt.Errorf("gateway: %s: %q is not host:port: %w", key("addr"), l.Addr, err)
	}
	if l.MaxMessage < 0 {
		return fmt.Errorf("gateway: %s: negative", key("max_message"))
	}
	if l.MaxQueueBytes < 0 {
		return fmt.Errorf("gateway: %s: negative", key("max_queue_bytes"))
	}
	if err := l.validateLimits(key); err != nil {
		return err
	}
	if l.TLS != nil {
		if err := l.TLS.validate(key); err != nil {
			return err
		}
	}
	if err := l.validateHeartbeat(key); err != nil {
		return err
	}
	switch l.QueuePolicy {
	case "", QueueDisconnect, QueueDropOldest, QueueDropNewest:
	default:
		return fmt.Errorf("gateway: %s: %q is not disconnect, drop_oldest or drop_newest", key("queue_policy"), l.QueuePolicy)
	}
	if l.Protocol == "ws" {
		switch l.MessageType {
		case "", "auto", "text", "binary":
		default:
			return fmt.Errorf("gateway: %s: %q is not auto, text or binary", key("message_type"), l.MessageType)
		}
		if l.Framing != (framing.Config{}) {
			return fmt.Errorf("gateway: %s: only for tcp listeners", key("framing"))
		}
		if l.Path != "" && !strings.HasPrefix(l.Path, "/") {
			return fmt.Errorf("gateway: %s: %q must start with /", key("path"), l.Path)
		}
	} else {
		if l.Path != "" {
			return fmt.Errorf("gateway: %s: only for ws listeners", key("path"))
		}
		if l.MessageType != "" {
			return fmt.Errorf("gateway: %s: only for ws listeners", key("message_type"))
		}
		if err := l.Framing.Validate(); err != nil {
			return fmt.Errorf("gateway: %s: %w", key("framing"), err)
		}
	}
	return nil
}

// Validate reports the first problem in c, naming the offending key.
func (c Config) Validate() error {
	if len(c.Listeners) == 0 {
		return errors.New("gateway: listeners: at least one listener is required")
	}
	names := map[string]int{}
	for i, l := range c.Listeners {
		if err := l.validate(i); err != nil {
			return err
		}
		name := l.Name
		if name == "" {
			name = l.Protocol
		}
		if j, dup := names[name]; dup {
			return fmt.Errorf("gateway: listeners[%d].name: %q already used by listeners[%d]", i, name, j)
		}
		names[name] = i
	}
	if _, err := bus.NewSubjects(c.Prefix); err != nil {
		return fmt.Errorf("gateway: prefix: %w", err)
	}
	if c.MaxGroups < 0 {
		return errors.New("gateway: max_groups must not be negative")
	}
	if c.MaxInterestSubjects < 0 {
		return errors.New("gateway: max_interest_subjects must not be negative")
	}
	if c.EventTimeout < 0 || c.HeartbeatInterval < 0 || c.CloseTimeout < 0 || c.DrainWindow < 0 || c.HandshakeTimeout < 0 ||
		c.RedeliveryBackoff < 0 || c.RedeliveryBackoffMax < 0 {
		return errors.New("gateway: durations must not be negative")
	}
	if c.MaxDeliveries < 0 {
		return errors.New("gateway: max_deliveries must not be negative")
	}
	if c.MaxInFlight < 0 {
		return errors.New("gateway: max_in_flight must not be negative")
	}
	if c.RedeliveryBackoffMax > 0 && c.RedeliveryBackoffMax < c.RedeliveryBackoff {
		return fmt.Errorf("gateway: redelivery_backoff_max %v is shorter than redelivery_backoff %v", c.RedeliveryBackoffMax, c.RedeliveryBackoff)
	}
	switch c.DeadLetterPolicy {
	case "", DeadLetterContinue, DeadLetterClose:
	default:
		return fmt.Errorf("gateway: dead_letter_policy: %q is not continue or close", c.DeadLetterPolicy)
	}
	if err := c.validateCodecs(); err != nil {
		return err
	}
	if c.UIDGateLease != 0 && c.UIDGateLease < minGateLease {
		return fmt.Errorf("gateway: uid_gate_lease: %v is below %v", c.UIDGateLease, minGateLease)
	}
	switch c.Dispatch {
	case "", DispatchClient, DispatchUID:
	default:
		return fmt.Errorf("gateway: dispatch: %q is not client or uid", c.Dispatch)
	}
	return c.validateLimits()
}

// pollers is the number of poller goroutines each listener's engine
// runs: Pollers, or GOMAXPROCS when it is 0 or less.
func (c *Config) pollers() int {
	if c.Pollers > 0 {
		return c.Pollers
	}
	return runtime.GOMAXPROCS(0)
}
