package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio/logging"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/clientid"
	"github.com/gatework/gatework/internal/membership"
	"github.com/gatework/gatework/internal/phase"
)

// cmdQueue bounds the acks, commands, broadcasts and queries waiting to be
// executed (Server.cmdQueueLen; tests make it smaller).
const cmdQueue = 1 << 16

// quietEngine silences the socket engine's own logger: the gateway
// logs what matters with slog.
var quietEngine sync.Once

// ErrServerClosed is returned by Start after Shutdown.
var ErrServerClosed = errors.New("gateway: server closed")

// LostEventsError is Shutdown's error when its context ended before every
// queued event (close events included) was handed to a worker and
// acknowledged: those events are lost. It wraps the context's error.
type LostEventsError struct {
	// Clients is how many clients had events left; Events how many events
	// in all, CloseEvents how many of them were close events.
	Clients, Events, CloseEvents int
	// Err is the context's error.
	Err error
}

// Error implements error.
func (e *LostEventsError) Error() string {
	return fmt.Sprintf("gateway: shutdown: %d events of %d clients (%d close events) not handed to a worker in time, lost: %v",
		e.Events, e.Clients, e.CloseEvents, e.Err)
}

// Unwrap returns the context's error.
func (e *LostEventsError) Unwrap() error { return e.Err }

// Server is a gateway: it holds client connections and serves them to the
// bus. Create it with New, then Start; Shutdown stops it.
type Server struct {
	cfg    Config
	nc     *nats.Conn
	subj   bus.Subjects
	id     string
	log    *slog.Logger
	shards []*shard
	// closeSkip says whether close events may be left out (closeevents.go).
	closeSkip closeSkip
	seq       atomic.Uint64

	listeners     []*listener
	listenerNames []string // sorted, for heartbeats
	subs          []*nats.Subscription
	// cmdQueueLen is the bound of the ordered command channel; 0 until
	// Start means cmdQueue.
	cmdQueueLen int
	members     *membership.Tracker
	interest    *interest

	// The in-flight event batches, guarded by infMu.
	infMu sync.Mutex
	// redeliverIdle (guarded by infMu): the redelivery ticker is stopped,
	// nothing being in flight; queueLocked wakes timers through
	// redeliverWake to start it again.
	redeliverIdle bool
	redeliverWake chan struct{}
	inflight      map[uint64]*delivery
	// gates serialize the batches of a uid's clients (DispatchUID).
	gates        uidGates
	parked       []*delivery
	lastProbe    time.Time
	nextDelivery atomic.Uint64
	ackPrefix    string

	// Batching across clients (multi.go): the publisher's outbox, the
	// last multi message's number, and until when (unix nanoseconds)
	// batches go out one by one because no worker took a multi message.
	out           outbox
	multis        multiLog
	nextMulti     atomic.Uint64
	multiOffUntil atomic.Int64

	// The in-flight window (redelivery.go), guarded by infMu: batches out
	// at the workers, the window's size, the size above which it grows by
	// one per window of acks instead of one per ack, its FIFO queue, when
	// it was last cut on a timeout (unix nanoseconds).
	outstanding int
	window      float64
	ssthresh    float64
	queue       []*delivery
	queueBase   []*delivery // the array queue starts over in when empty
	lastCut     int64
	lastBusyCut int64 // when a busy nack last cut the window below what is out

	stats   stats
	press   pressure
	hbMu    sync.Mutex // one heartbeat at a time, so the last one published has the latest Overloaded
	lim     *limits
	started time.Time
	closing atomic.Bool
	quit    chan struct{}
	wg      sync.WaitGroup

	accepting  atomic.Bool   // between a successful Start and Shutdown
	sweepEvery time.Duration // heartbeat.go; 0: no pings, no idle timeout
	// sweepPhase is where in each sweep period this process's sweeps fall
	// (random): gateway processes of one node do not all ping at once.
	sweepPhase time.Duration
}

// stats are the gateway's counters; see Stats.
type stats struct {
	accepted    atomic.Uint64
	closes      [reasonCount]atomic.Uint64
	eventsSent  atomic.Uint64
	redelivered atomic.Uint64
	badAcks     atomic.Uint64
	badCommands atomic.Uint64
	throttled   [policyCount]atomic.Uint64
	refused     [refusalCount]atomic.Uint64
	ackLatency  latencyHistogram // event batch publish → final ack
	eventMsgs   atomic.Uint64    // bus messages that carried event batches
	multiMsgs   atomic.Uint64    // of which EventBatches messages
	ackMsgs     atomic.Uint64    // bus messages received on the ack subjects
	workers     workerTable      // final acks by worker id
	dropped     [len(queuePolicies)]atomic.Uint64

	timeouts     atomic.Uint64 // deliveries without an ack in time
	nacks        atomic.Uint64
	busy         atomic.Uint64 // busy nacks: batches a worker had no room for
	deadLettered atomic.Uint64
	// lostAtShutdown: events Shutdown gave up on (LostEventsError).
	lostAtShutdown atomic.Uint64
	busSlow        atomic.Uint64 // slow consumers reported on the bus connection
}

// Stats is a snapshot of a gateway's counters.
type Stats struct {
	Gateway     string            `json:"gateway"`
	Connections int               `json:"connections"`
	UIDs        int               `json:"uids"`         // distinct bound uids
	Groups      int               `json:"groups"`       // groups with at least one member
	MessagesIn  uint64            `json:"messages_in"`  // messages received from clients
	MessagesOut uint64            `json:"messages_out"` // messages queued to clients
	BytesIn     uint64            `json:"bytes_in"`     // message payload bytes received
	BytesOut    uint64            `json:"bytes_out"`    // bytes written to sockets, framing included
	Accepted    uint64            `json:"accepted"`
	Closes      map[string]uint64 `json:"closes"`      // by CloseReason name
	EventsSent  uint64            `json:"events_sent"` // event batches published (first attempts)
	Redelivered uint64            `json:"redelivered"` // event batches published again
	// EventMessages counts the bus messages that carried event batches
	// (first deliveries and redeliveries), MultiMessages those of them
	// that carried several clients' batches (EventBatches), and
	// AckMessages the bus messages received on the ack subjects (an Acks
	// message counts once): with EventsSent they say how many batches
	// and acks share a bus message.
	EventMessages uint64 `json:"event_messages"`
	MultiMessages uint64 `json:"multi_messages"`
	AckMessages   uint64 `json:"ack_messages"`
	InFlight      int    `json:"in_flight"` // batches waiting for an ack
	Parked        int    `json:"parked"`    // batches waiting for any worker to appear
	BadAcks       uint64 `json:"bad_acks"`
	BadCommands   uint64 `json:"bad_commands"`
	// Throttled counts the messages over a rate limit, by policy (drop,
	// close, force_close, close_ip, force_close_ip).
	Throttled map[string]uint64 `json:"throttled"`
	// Refused counts the sockets refused at accept or upgrade, by cause:
	// rate, total, per_ip, ip_table (limits at accept), origin,
	// bad_handshake (an upgrade request answered with an HTTP error),
	// handshake_timeout (an upgrade or TLS handshake not complete in
	// time), tls_handshake (a TLS handshake that failed), peers (a
	// datagram from a new UDP peer while the listener's peer table is
	// full), bad_datagram (a datagram from a new UDP peer over max_message
	// or not one frame), upgrade_rejected / upgrade_timeout /
	// upgrade_busy (a listener with UpgradeHook: a worker rejected the
	// upgrade; nobody answered in time; too many upgrades waited). A UDP
	// peer counts as a socket for the limits.
	Refused map[string]uint64 `json:"refused"`
	// Listeners holds each listener's connections, by listener name.
	Listeners map[string]ListenerStats `json:"listeners"`
	// QueuedBytes is the outbound data queued for clients and not yet
	// written to their sockets, over all connections.
	QueuedBytes int64 `json:"queued_bytes"`
	// Workers counts the event batches and events acknowledged by each
	// worker, by worker id (see workerTable for the bound).
	Workers map[string]WorkerStats `json:"workers"`
	// AckLatency is the time from publishing an event batch to its final
	// ack (worker handling included).
	AckLatency LatencyHistogram `json:"ack_latency"`
	// Interest is the routing by interest: subscriptions and the commands
	// the gateway received from the bus.
	Interest InterestStats `json:"interest"`
	// Dropped counts the messages dropped at a connection's queue bound,
	// by queue policy name (see QueueDisconnect); pongs and heartbeat
	// pings dropped there count too.
	Dropped map[string]uint64 `json:"dropped"`
	// TimedOut counts the deliveries of event batches that got neither a
	// final ack nor progress within EventTimeout.
	TimedOut uint64 `json:"timed_out"`
	// Nacked counts the deliveries a worker refused (an Ack with nack).
	Nacked uint64 `json:"nacked"`
	// Busy counts the publishes a worker did not take for lack of room
	// (a busy nack, not counted in Nacked): each went again as the same
	// attempt once the window had room.
	Busy uint64 `json:"busy"`
	// DeadLettered counts the event batches given up after MaxDeliveries
	// and published on the dead-letter subject.
	DeadLettered uint64 `json:"dead_lettered"`
	// LostAtShutdown counts the events (close events included) that
	// Shutdown's deadline left undelivered (see LostEventsError).
	LostAtShutdown uint64 `json:"lost_at_shutdown,omitempty"`
	// Window is the in-flight window: the most event batches out at the
	// workers at once (from 16 up to MaxInFlight; cut when deliveries time
	// out or a worker answers busy). Queued are the batches of InFlight
	// waiting for room in it.
	Window int `json:"window"`
	Queued int `json:"queued"`
	// BusSlowConsumers counts the slow consumers the NATS client reported
	// on the gateway's bus connection since Start: each time one of its
	// subscriptions (commands, broadcasts, queries, acks, uid and group
	// subjects) fell behind its bound and the client began dropping its
	// messages.
	BusSlowConsumers uint64 `json:"bus_slow_consumers"`
	// Overloaded says the outbound backlog passed Config.MaxQueuedBytes
	// (or a quarter of the command queue) and has not yet fallen under
	// half of it: API clients refuse new sends meanwhile.
	Overloaded bool `json:"overloaded"`
	// SendsRefused counts the sends (commands to clients, uids, groups or
	// all) the gateway refused because its backlog was past twice
	// Config.MaxQueuedBytes (or half the command queue). Each is a
	// message its caller was told was accepted when it had no reply
	// subject: lost, and counted here.
	SendsRefused uint64 `json:"sends_refused"`
	// CommandsWaiting is the commands, acks, broadcasts and queries
	// waiting in the ordered command queue.
	CommandsWaiting int `json:"commands_waiting"`
	// UIDGatesOwned is the uids whose cluster gate this gateway keeps now
	// (held or waited for; dispatch by uid, see uidgate.go).
	UIDGatesOwned int `json:"uid_gates_owned"`
	// UIDGatesUnserved counts the batches that went out without their
	// uid's cluster gate because its owner never answered (a gateway of a
	// version without uid gates).
	UIDGatesUnserved uint64 `json:"uid_gates_unserved"`
}

// New returns a gateway that will use nc (borrowed: Shutdown does not close
// it). It validates cfg and applies defaults, but opens nothing.
func New(nc *nats.Conn, cfg Config) (*Server, error) {
	if nc == nil {
		return nil, errors.New("gateway: nil NATS connection")
	}
	quietEngine.Do(func() { logging.SetLevel(logging.LevelNone) })
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Listeners = append([]ListenerConfig(nil), cfg.Listeners...)
	cfg.applyDefaults()
	subj, _ := bus.NewSubjects(cfg.Prefix)
	s := &Server{
		cfg:      cfg,
		nc:       nc,
		subj:     subj,
		id:       clientid.NewGateway(),
		log:      cfg.Logger,
		inflight: make(map[uint64]*delivery),
		window:   min(minWindow, float64(cfg.MaxInFlight)),
		ssthresh: float64(cfg.MaxInFlight),
		quit:     make(chan struct{}),

		redeliverWake: make(chan struct{}, 1),
	}
	s.lim = newLimits(&s.cfg)
	s.log = s.log.With("node", s.id)
	s.ackPrefix = subj.Ack(s.id) + "."
	s.interest = newInterest(s)
	for range cfg.Shards {
		s.shards = append(s.shards, newShard(s))
	}
	for i := range cfg.Listeners {
		s.listeners = append(s.listeners, newListener(s, cfg.Listeners[i]))
		s.listenerNames = append(s.listenerNames, cfg.Listeners[i].Name)
	}
	slices.Sort(s.listenerNames)
	s.listenerNames = slices.Compact(s.listenerNames)
	s.sweepEvery = s.sweepPeriod()
	if s.sweepEvery > 0 {
		s.sweepPhase = rand.N(s.sweepEvery)
	}
	return s, nil
}

// ID returns the gateway's incarnation id, the first 10 characters of every
// client id it hands out.
func (s *Server) ID() string { return s.id }

// Start subscribes to the bus, starts the flushers and opens every
// listener. It returns once the gateway accepts clients.
func (s *Server) Start() error {
	if s.closing.Load() {
		return ErrServerClosed
	}
	s.started = time.Now()
	m, err := membership.New(s.nc, membership.Config{
		Prefix:   s.cfg.Prefix,
		Self:     s.id,
		Interval: s.cfg.HeartbeatInterval,
		Logger:   s.log,
		Passive:  s.cfg.IgnorePeerHeartbeats,
	})
	if err != nil {
		return fmt.Errorf("gateway: membership: %w", err)
	}
	s.members = m
	for _, sh := range s.shards {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); sh.run() }()
		if s.sweepEvery > 0 {
			s.wg.Add(1)
			go func() { defer s.wg.Done(); sh.sweepLoop() }()
		}
	}
	// Workers' acks, commands to this gateway, broadcasts and queries
	// share one channel and one goroutine, so that what one publisher
	// sends is executed in the order it was sent, whichever subject it
	// took: a client gets a worker's ack actions and the same worker's
	// API sends in the order the handler made them, and a caller's query
	// sees everything it published before (an UnGroup, then a count,
	// counts without the group). The channel is the bound: when it is
	// full the NATS client drops and reports a slow consumer (counted in
	// Stats.BusSlowConsumers and logged by the connection's error handler;
	// a dropped batch's ack is made good by the redelivery).
	s.countSlowConsumers()
	if s.cmdQueueLen == 0 {
		s.cmdQueueLen = cmdQueue
	}
	cmds := make(chan *nats.Msg, s.cmdQueueLen)
	s.press.cmds, s.press.wake = cmds, make(chan struct{}, 1)
	for _, subject := range []string{s.ackPrefix + "*", s.subj.Cmd(s.id), s.subj.Broadcast(), s.subj.Query()} {
		sub, err := s.nc.ChanSubscribe(subject, cmds)
		if err != nil {
			s.stopBus()
			return fmt.Errorf("gateway: subscribe %s: %w", subject, err)
		}
		// Bounded by the channel: when it is full the NATS client drops
		// the message and reports a slow consumer (pending limits do not
		// apply to a channel subscription).
		s.subs = append(s.subs, sub)
	}
	if err := s.subscribeAnnouncements(); err != nil {
		s.stopBus()
		return fmt.Errorf("gateway: subscribe %s: %w", s.subj.WorkerAnnounce(), err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case m := <-cmds:
				if strings.HasPrefix(m.Subject, s.ackPrefix) {
					s.onAck(m)
				} else {
					s.onCommand(m)
				}
				s.press.noteCommand()
			case <-s.quit:
				return
			}
		}
	}()
	s.interest.start(cmds, s.quit, &s.wg)
	wake := make(chan struct{}, 1)
	s.out.mu.Lock()
	s.out.wake = wake
	s.out.mu.Unlock()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.publisher(wake) }()
	if err := s.startUIDGates(); err != nil {
		s.stopBus()
		return fmt.Errorf("gateway: uid gates: %w", err)
	}
	if err := s.nc.Flush(); err != nil {
		s.stopBus()
		return fmt.Errorf("gateway: bus flush: %w", err)
	}
	s.heartbeat(false)
	if !s.awaitUIDPeers() {
		s.stopBus()
		return ErrServerClosed
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.timers() }()
	if s.pressureOn() {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.pressureLoop() }()
	}
	for i, l := range s.listeners {
		if err := l.start(); err != nil {
			for _, started := range s.listeners[:i] {
				started.stop()
			}
			s.stopBus()
			return fmt.Errorf("gateway: listener %s: %w", l.cfg.Name, err)
		}
		s.log.Info("listening", "listener", l.cfg.Name, "protocol", l.cfg.Protocol, "addr", l.addr.String())
	}
	s.accepting.Store(true)
	return nil
}

// Accepting reports whether every listener accepts clients: Start has
// succeeded and Shutdown has not begun. Safe for concurrent use.
func (s *Server) Accepting() bool { return s.accepting.Load() && !s.closing.Load() }

// Addr returns the address listener name is bound to, or nil.
func (s *Server) Addr(name string) net.Addr {
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			return l.addr
		}
	}
	return nil
}

// Shutdown stops accepting clients and closes every connection: each gets
// its close frame (1001) after its queued data, spread over DrainWindow.
// It then waits until every socket is closed and every close event was
// handed to a worker, or ctx ends, and leaves the bus. With no worker
// running (or one too slow for the close events of every client within
// ctx), the close events cannot all be handed over: when ctx ends
// Shutdown counts the events still queued or unacknowledged, logs them
// as lost (a warning with clients, events and close_events) and returns
// a *LostEventsError wrapping ctx.Err(); never a bare timeout.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return ErrServerClosed
	}
	s.accepting.Store(false)
	for _, l := range s.listeners {
		l.stopAccepting()
	}
	err := s.closeAll(ctx)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for s.connCount() > 0 || s.inFlight() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			if lost := s.undelivered(); lost.Events > 0 {
				lost.Err = err
				s.stats.lostAtShutdown.Add(uint64(lost.Events))
				s.log.Warn("shutdown: events not handed to a worker in time: lost (are workers running, and fast enough for shutdown_timeout?)",
					"clients", lost.Clients, "events", lost.Events, "close_events", lost.CloseEvents,
					"open_connections", s.connCount(), "err", err)
				err = lost
			} else if n := s.connCount(); n > 0 {
				s.log.Warn("shutdown: connections still open at the deadline: closed at once", "open_connections", n, "err", err)
			}
			break wait
		case <-tick.C:
		}
	}
	for _, l := range s.listeners {
		l.stop()
	}
	s.heartbeat(true)
	s.stopBus()
	return err
}

// closeAll sends every connection its close frame (1001), spread evenly
// over DrainWindow so that clients do not all reconnect at once (lame duck).
func (s *Server) closeAll(ctx context.Context) error {
	var all []*conn
	s.eachShard(func(sh *shard) {
		for _, c := range sh.conns {
			all = append(all, c)
		}
	})
	const steps = 20
	per := len(all)
	var pause time.Duration
	if s.cfg.DrainWindow > 0 && len(all) > 1 {
		per = (len(all) + steps - 1) / steps
		pause = s.cfg.DrainWindow / steps
	}
	for len(all) > 0 {
		n := min(per, len(all))
		for _, c := range all[:n] {
			s.close(c, ReasonShutdown, false)
		}
		all = all[n:]
		if len(all) == 0 || pause == 0 {
			continue
		}
		select {
		case <-ctx.Done():
			pause = 0 // out of time: close the rest at once
			per = len(all)
		case <-time.After(pause):
		}
	}
	return ctx.Err()
}

// countSlowConsumers puts a handler in front of the bus connection's
// asynchronous error handler that counts slow consumers, then calls the
// one it replaced (bus.Connect's logs them); without one, the gateway
// logs them itself, rate-limited.
func (s *Server) countSlowConsumers() {
	next := s.nc.ErrorHandler()
	if next == nil {
		next = bus.NewAsyncErrors(s.log).Handle
	}
	s.nc.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			s.stats.busSlow.Add(1)
		}
		s.multiRefused(err)
		next(nc, sub, err)
	})
}

func (s *Server) stopBus() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.subs = nil
	s.interest.stop()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	for _, sh := range s.shards {
		select {
		case <-sh.quit:
		default:
			close(sh.quit)
		}
	}
	s.wg.Wait()
	if s.members != nil {
		_ = s.members.Close()
	}
	_ = s.nc.Flush()
}

func (s *Server) connCount() int {
	n := 0
	for _, sh := range s.shards {
		sh.mu.Lock()
		n += len(sh.conns)
		sh.mu.Unlock()
	}
	return n
}

// undelivered counts the events not yet acknowledged by a worker: those of
// the batches in flight, parked or queued, and those waiting behind them;
// and the close event of every client still in the hub (open, or closing
// and waiting for its peer), unless close events are being left out
// (closeevents.go). Such a client is closed when Shutdown stops the
// listeners, while the bus is still up: undelivered marks it closeLost
// so that its close event, counted lost here, is never produced (a worker
// would handle it after the log said it was lost). Shutdown calls it
// once, at its deadline.
func (s *Server) undelivered() *LostEventsError {
	conns := map[*conn]struct{}{}
	s.infMu.Lock()
	for _, d := range s.inflight {
		conns[d.c] = struct{}{}
	}
	for _, d := range s.parked {
		conns[d.c] = struct{}{}
	}
	s.infMu.Unlock()
	// Clients with pending events and no batch out (not dispatched yet);
	// every client in the hub (open, or closing: remove takes them out)
	// also has its close event to come.
	comes := !s.closeSkip.skipClose()
	s.eachShard(func(sh *shard) {
		for _, c := range sh.conns {
			conns[c] = struct{}{}
			// Counted lost: the listener stop, which runs while the
			// bus is still up, must not produce it (see closed).
			c.closeLost = comes
		}
	})
	lost := &LostEventsError{}
	for c := range conns {
		closes := 0
		if c.closeLost { // written above, by this goroutine
			closes = 1
		}
		c.evmu.Lock()
		evs := len(c.pending) + closes
		for _, ev := range c.pending {
			if ev.Type == bus.EventClose {
				closes++
			}
		}
		if d := c.inflight; d != nil {
			evs += len(d.events)
			for _, ev := range d.events {
				if ev.Type == bus.EventClose {
					closes++
				}
			}
		}
		c.evmu.Unlock()
		if evs > 0 {
			lost.Clients++
			lost.Events += evs
			lost.CloseEvents += closes
		}
	}
	return lost
}

func (s *Server) inFlight() int {
	s.infMu.Lock()
	defer s.infMu.Unlock()
	return len(s.inflight) + len(s.parked) + int(s.interest.flushAcks.Load())
}

// Stats returns a snapshot of the gateway's counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Gateway:     s.id,
		Connections: s.connCount(),
		Accepted:    s.stats.accepted.Load(),
		Closes:      make(map[string]uint64, reasonCount),
		EventsSent:  s.stats.eventsSent.Load(),
		Redelivered: s.stats.redelivered.Load(),

		EventMessages: s.stats.eventMsgs.Load(),
		MultiMessages: s.stats.multiMsgs.Load(),
		AckMessages:   s.stats.ackMsgs.Load(),

		BadAcks:     s.stats.badAcks.Load(),
		BadCommands: s.stats.badCommands.Load(),
		Dropped:     s.droppedStats(),

		BusSlowConsumers: s.stats.busSlow.Load(),
		Overloaded:       s.press.over.Load(),
		SendsRefused:     s.press.refused.Load(),
		UIDGatesOwned:    s.gates.cluster.own.size(),
		UIDGatesUnserved: s.gates.cluster.unserved.Load(),
		CommandsWaiting:  s.press.cmdsWaiting(),
	}
	st.TimedOut, st.Nacked, st.Busy = s.stats.timeouts.Load(), s.stats.nacks.Load(), s.stats.busy.Load()
	st.DeadLettered = s.stats.deadLettered.Load()
	st.LostAtShutdown = s.stats.lostAtShutdown.Load()
	for r := range reasonCount {
		st.Closes[r.String()] = s.stats.closes[r].Load()
	}
	s.limitStats(&st)
	st.UIDs = len(s.distinct(func(sh *shard, add func(string)) {
		for u := range sh.uids {
			add(u)
		}
	}))
	st.Groups = len(s.distinct(func(sh *shard, add func(string)) {
		for g := range sh.groups {
			add(g)
		}
	}))
	for _, sh := range s.shards {
		sh.mu.Lock()
		st.MessagesOut += sh.msgsOut
		sh.mu.Unlock()
		st.MessagesIn += sh.msgsIn.Load()
		st.BytesIn += sh.bytesIn.Load()
		st.BytesOut += sh.bytesOut.Load()
	}
	s.infMu.Lock()
	st.InFlight, st.Parked = len(s.inflight), len(s.parked)
	st.Window = int(s.window)
	for _, d := range s.inflight {
		if d.state == deliveryQueued {
			st.Queued++
		}
	}
	s.infMu.Unlock()
	s.moreStats(&st)
	st.Interest = s.InterestStats()
	return st
}

// redeliverTick is how often timers looks for expired deliveries while
// batches are in flight or parked; with none it does not tick (an idle
// gateway wakes once per heartbeat only).
const redeliverTick = 100 * time.Millisecond

// timers runs the gateway's periodic work: heartbeats, event redelivery
// (redelivery.go) and probing for workers while batches are parked.
func (s *Server) timers() {
	// On wall-clock boundaries: every gateway process of a node sends
	// its heartbeat at the same instant, so each hears all of them in one
	// wake-up (internal/phase).
	hb := time.NewTimer(phase.Until(s.cfg.HeartbeatInterval))
	defer hb.Stop()
	redeliver := time.NewTicker(redeliverTick)
	defer redeliver.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-hb.C:
			s.heartbeat(false)
			hb.Reset(phase.Until(s.cfg.HeartbeatInterval))
		case <-s.redeliverWake:
			redeliver.Reset(redeliverTick)
		case now := <-redeliver.C:
			s.redeliverExpired(now)
			s.infMu.Lock()
			if s.redeliverIdleLocked() {
				redeliver.Stop()
			}
			s.infMu.Unlock()
		}
	}
}

func (s *Server) heartbeat(leaving bool) {
	s.hbMu.Lock()
	defer s.hbMu.Unlock()
	hb := bus.Heartbeat{
		Overloaded:    s.press.over.Load() && !leaving,
		Gateway:       s.id,
		Leaving:       leaving,
		IntervalMs:    uint32(s.cfg.HeartbeatInterval / time.Millisecond),
		StartedUnixMs: s.started.UnixMilli(),
		Clients:       uint64(s.connCount()),
		Listeners:     s.listenerNames,
	}
	if err := s.nc.Publish(s.subj.Heartbeat(), bus.AppendHeartbeat(nil, &hb)); err != nil {
		s.log.Warn("heartbeat not sent", "err", err)
	}
}

// newConn returns a connection not yet in the hub.
func (s *Server) newConn(l *listener, t transport, remote netip.AddrPort) *conn {
	seq := s.seq.Add(1)
	c := &conn{
		seq:         seq,
		sh:          s.shards[seq%uint64(len(s.shards))],
		l:           l,
		t:           t,
		remote:      remote,
		connectedMs: time.Now().UnixMilli(),
	}
	c.lastActiveMs.Store(c.connectedMs)
	return c
}

// testHookRegistered, when set by a test, runs in register between
// adding c to the hub (its preamble written) and queuing its first events.
var testHookRegistered func()

// register puts c in the hub, right after preamble (when not nil: see
// shard.addAfter), and queues its first events. Called on c's event loop
// (nothing of c is read before the first events are queued), or after
// queuing the first events itself when not (upgradeAnswered).
func (s *Server) register(c *conn, preamble func(), first ...bus.Event) {
	c.sh.addAfter(c, preamble)
	if testHookRegistered != nil {
		testHookRegistered()
	}
	s.stats.accepted.Add(1)
	c.l.accepted.Add(1)
	c.l.open.Add(1)
	for _, ev := range first {
		if ev.Type == bus.EventConnect && s.closeSkip.skipConnect() {
			continue // no worker has OnConnect (closeevents.go)
		}
		ev.TimeUnixMs = c.connectedMs
		s.pushEvent(c, ev)
	}
}

// received is called by a listener for each inbound message of c. data is
// copied; the caller may reuse it.
func (s *Server) received(c *conn, data []byte, binary bool) {
	now := time.Now().UnixMilli()
	c.lastActiveMs.Store(now)
	if !s.admitMessage(c) {
		return
	}
	c.msgsIn.Add(1)
	c.bytesIn.Add(uint64(len(data)))
	c.sh.msgsIn.Add(1)
	c.sh.bytesIn.Add(uint64(len(data)))
	var value []byte
	if c.l.codec != nil {
		v, err := c.l.decodeInbound(data)
		if err != nil {
			if ev, ok := s.decodeFailed(c, data, binary, err, now); ok {
				s.pushEvent(c, ev)
			}
			return
		}
		value = v
	}
	s.pushEvent(c, bus.Event{
		Type:       bus.EventMessage,
		Data:       append([]byte(nil), data...),
		Binary:     binary,
		Value:      value,
		TimeUnixMs: now,
	})
}

// closed is called by a listener when c's socket has closed; reason
// applies unless the gateway itself started the close.
func (s *Server) closed(c *conn, reason CloseReason) {
	if !c.sh.remove(c, reason) {
		return
	}
	c.l.open.Add(-1)
	s.interest.sync()
	// closeLost is written under c.sh.mu while c is in the hub; remove
	// took that lock and took c out, so this read is ordered after it.
	if c.closeLost {
		return // counted lost at Shutdown's deadline (undelivered)
	}
	if s.closeSkip.skipClose() {
		return // no worker has a close handler: closeevents.go
	}
	s.pushEvent(c, bus.Event{
		Type:        bus.EventClose,
		CloseReason: c.reason.String(),
		TimeUnixMs:  time.Now().UnixMilli(),
	})
}

// closeWith closes c gracefully with a given close code and text.
func (s *Server) closeWith(c *conn, reason CloseReason, code int, text string) {
	c.sh.mu.Lock()
	c.sh.closeWithLocked(c, reason, code, text)
	c.sh.mu.Unlock()
}

// queueControl queues a WebSocket control frame (a pong) behind the data
// already queued for c, so that the byte accounting stays exact, within
// the queue bound (see shard.controlFitsLocked). payload is at most 125
// bytes (RFC 6455 §5.5).
func (s *Server) queueControl(c *conn, opcode byte, payload []byte) {
	sh := c.sh
	sh.mu.Lock()
	if c.state == stateOpen && sh.controlFitsLocked(c, 2+len(payload)) {
		if c.out == nil {
			c.out = sh.getBufLocked(len(payload) + 2)
		}
		n := len(c.out)
		c.out = appendWSFrame(c.out, opcode, payload)
		noteFrame(c, len(c.out)-n)
		sh.markDirtyLocked(c)
	}
	sh.mu.Unlock()
	sh.signal()
}

func nowMs() int64 { return time.Now().UnixMilli() }

// close starts closing c (see shard.closeLocked).
func (s *Server) close(c *conn, reason CloseReason, force bool) {
	c.sh.mu.Lock()
	c.sh.closeLocked(c, reason, force)
	c.sh.mu.Unlock()
}
