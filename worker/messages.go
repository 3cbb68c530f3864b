package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// ErrUnknownWorker: SendMessage named a worker id that is not in
// GetWorkerList.
var ErrUnknownWorker = errors.New("worker: unknown worker id")

// ErrMessageTooLarge: a worker message is over Config.MaxMessage.
var ErrMessageTooLarge = errors.New("worker: message too large")

// AnnounceInterval is how often a worker announces itself to the others
// (bus.WorkerInfo); one not heard from for three intervals is gone.
const AnnounceInterval = 2 * time.Second

// announceExpiry is how long a worker stays listed without announcing.
const announceExpiry = 3 * AnnounceInterval

// WorkerInfo describes a worker process of the cluster (GetWorkerList).
type WorkerInfo struct {
	ID      string    `json:"id"`
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
	Kind    Kind      `json:"kind"`
}

// peers is what a worker knows of the others: their announcements and
// when each was last heard.
type peers struct {
	mu    sync.Mutex
	known map[string]peer
}

type peer struct {
	info  WorkerInfo
	heard time.Time
}

// messenger is the worker-message side of a Worker.
type messenger struct {
	subs                       []*nats.Subscription
	started                    time.Time // set by newWorker
	host                       string    // set by newWorker
	lastAnnounce               time.Time // touched by the monitor only
	peers                      peers
	sent, received, dropped    atomic.Uint64
	handlerPanics, unknownSent atomic.Uint64
}

// initMessages sets what the worker announces of itself.
func (w *Worker) initMessages() {
	w.msgs.started = time.Now()
	w.msgs.host, _ = os.Hostname()
	w.msgs.peers.known = make(map[string]peer)
}

// startMessages subscribes to the worker's own inbox, the broadcast and
// the announcements, and says hello.
func (w *Worker) startMessages() error {
	m := &w.msgs
	for _, s := range []struct {
		subj string
		cb   nats.MsgHandler
	}{
		{w.subj.WorkerInbox(w.cfg.ID), w.onWorkerMessage},
		{w.subj.WorkerBroadcast(), w.onWorkerMessage},
		{w.subj.WorkerAnnounce(), w.onAnnounce},
	} {
		sub, err := w.nc.Subscribe(s.subj, s.cb)
		if err != nil {
			w.stopMessages(false)
			return fmt.Errorf("worker: subscribe %s: %w", s.subj, err)
		}
		m.subs = append(m.subs, sub)
	}
	if err := w.nc.Flush(); err != nil {
		w.stopMessages(false)
		return fmt.Errorf("worker: subscribe to worker messages: %w", err)
	}
	w.announce(true, false)
	return nil
}

// stopMessages says goodbye (when leaving) and unsubscribes.
func (w *Worker) stopMessages(leaving bool) {
	if leaving {
		w.announce(false, true)
	}
	for _, s := range w.msgs.subs {
		_ = s.Unsubscribe()
	}
	w.msgs.subs = nil
}

// self describes this worker.
func (w *Worker) self() WorkerInfo {
	return WorkerInfo{ID: w.cfg.ID, PID: os.Getpid(), Host: w.msgs.host, Started: w.msgs.started, Kind: w.kind()}
}

// kind is the worker's kind.
func (w *Worker) kind() Kind {
	if w.cfg.Kind == "" {
		return KindEvent
	}
	return w.cfg.Kind
}

// announce publishes this worker's WorkerInfo.
func (w *Worker) announce(hello, leaving bool) {
	me := w.self()
	b := bus.AppendWorkerInfo(nil, &bus.WorkerInfo{ID: me.ID, PID: int32(me.PID), Host: me.Host,
		StartedUnixMs: me.Started.UnixMilli(), Kind: string(me.Kind), Hello: hello, Leaving: leaving,
		IntervalMs: uint32(AnnounceInterval / time.Millisecond), NoClose: me.Kind == KindEvent && w.h.OnClose == nil,
		NoWebSocketConnect: me.Kind == KindEvent && w.h.OnWebSocketConnect == nil,
		NoConnect:          me.Kind == KindEvent && w.h.OnConnect == nil})
	if err := w.nc.Publish(w.subj.WorkerAnnounce(), b); err != nil {
		w.log.Warn("worker announcement not sent", "err", err)
	}
}

// onAnnounce records another worker's announcement; a hello from a worker
// not known yet is answered with this worker's own, so a new worker knows
// the others within a round trip.
func (w *Worker) onAnnounce(m *nats.Msg) {
	var a bus.WorkerInfo
	if err := bus.DecodeWorkerInfo(m.Data, &a); err != nil || a.ID == "" {
		w.stats.malformed.Add(1)
		return
	}
	if a.ID == w.cfg.ID {
		return
	}
	p := &w.msgs.peers
	p.mu.Lock()
	_, known := p.known[a.ID]
	if a.Leaving {
		delete(p.known, a.ID)
	} else {
		p.known[a.ID] = peer{info: WorkerInfo{ID: a.ID, PID: int(a.PID), Host: a.Host,
			Started: time.UnixMilli(a.StartedUnixMs), Kind: Kind(a.Kind)}, heard: time.Now()}
	}
	p.mu.Unlock()
	if a.Hello && !known && !a.Leaving {
		w.announce(false, false)
	}
}

// announceTick is the monitor's part: announce every AnnounceInterval and
// forget the workers gone silent.
func (w *Worker) announceTick(now time.Time) {
	if w.msgs.subs == nil {
		return
	}
	if now.Sub(w.msgs.lastAnnounce) >= AnnounceInterval {
		w.msgs.lastAnnounce = now
		w.announce(false, false)
	}
	p := &w.msgs.peers
	p.mu.Lock()
	for id, pe := range p.known {
		if now.Sub(pe.heard) > announceExpiry {
			delete(p.known, id)
		}
	}
	p.mu.Unlock()
}

// GetWorkerList returns the worker processes of the cluster this worker
// knows (itself included), sorted by id: each announces itself when it
// starts and every AnnounceInterval, and is forgotten when it stops or
// after three silent intervals. A worker that just started knows the
// others within a bus round trip.
func (w *Worker) GetWorkerList() []WorkerInfo {
	out := []WorkerInfo{w.self()}
	now := time.Now()
	p := &w.msgs.peers
	p.mu.Lock()
	for _, pe := range p.known {
		if now.Sub(pe.heard) <= announceExpiry {
			out = append(out, pe.info)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// knows reports whether id is this worker or one it knows.
func (w *Worker) knows(id string) bool {
	if id == w.cfg.ID {
		return true
	}
	p := &w.msgs.peers
	p.mu.Lock()
	defer p.mu.Unlock()
	pe, ok := p.known[id]
	return ok && time.Since(pe.heard) <= announceExpiry
}

// SendMessage sends payload to the worker process id (Swoole's
// sendMessage); its OnWorkerMessage handler gets it. An id not in
// GetWorkerList fails with ErrUnknownWorker. Delivery is at most once (a
// plain NATS publish): the call returns once the bus took the message.
func (w *Worker) SendMessage(ctx context.Context, id string, payload []byte) error {
	if !w.knows(id) {
		w.msgs.unknownSent.Add(1)
		return fmt.Errorf("%w: %q (GetWorkerList lists the workers)", ErrUnknownWorker, id)
	}
	return w.sendMessage(ctx, w.subj.WorkerInbox(id), id, payload)
}

// SendMessageToAll sends payload to every worker process of the cluster,
// this one included, one copy each: every worker subscribes once to the
// broadcast subject.
func (w *Worker) SendMessageToAll(ctx context.Context, payload []byte) error {
	return w.sendMessage(ctx, w.subj.WorkerBroadcast(), "", payload)
}

// sendMessage publishes one WorkerMessage.
func (w *Worker) sendMessage(ctx context.Context, subject, to string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("worker: send message: %w", err)
	}
	if len(payload) > w.cfg.MaxMessage {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrMessageTooLarge, len(payload), w.cfg.MaxMessage)
	}
	b := bus.AppendWorkerMessage(nil, &bus.WorkerMessage{From: w.cfg.ID, To: to, Payload: payload})
	if err := w.nc.Publish(subject, b); err != nil {
		return fmt.Errorf("worker: send message: %w", err)
	}
	w.msgs.sent.Add(1)
	return nil
}

// onWorkerMessage runs OnWorkerMessage for a message from another worker.
// Messages of one subscription (this worker's inbox, the broadcast) are
// handled one at a time, in order.
func (w *Worker) onWorkerMessage(m *nats.Msg) {
	var msg bus.WorkerMessage
	if err := bus.DecodeWorkerMessage(m.Data, &msg); err != nil {
		w.stats.malformed.Add(1)
		return
	}
	w.msgs.received.Add(1)
	h := w.h.OnWorkerMessage
	if h == nil {
		w.msgs.dropped.Add(1)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			w.msgs.handlerPanics.Add(1)
			w.stats.panics.Add(1)
			w.log.Error("OnWorkerMessage panicked", "from", msg.From, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	h(w, msg.From, msg.Payload[:len(msg.Payload):len(msg.Payload)])
}
