package gateway

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// Batching across clients on the bus (docs/bus-protocol.md, "Batching
// across clients").
//
// Batches to publish go to the gateway's outbox. One goroutine, the
// publisher, takes whatever the outbox holds when it gets to it: one
// batch goes out as before (an EventBatch on P.events, reply subject
// P.gw.<id>.ack.<delivery>); several go out as one EventBatches message
// on P.events.multi, reply subject P.gw.<id>.ack.m<n>, which the workers
// answer with Acks messages (several acks in one message). Nothing waits
// for a timer: under light load the publisher finds one batch each time
// it wakes, under load the batches that arrive while it publishes go out
// together. Each inner batch is still its own delivery (attempts,
// redelivery, nacks, dead letters, the in-flight window and per-client
// order do not change). When no worker subscribes to P.events.multi (a
// cluster of workers that only speak single batches), the NATS server
// answers the multi message with no-responders: its batches go again one
// by one at once, and multi messages are not tried again for
// multiRetry.

const (
	// maxMultiBatches bounds the batches of one EventBatches message.
	maxMultiBatches = 128
	// maxMultiBytes bounds its encoded size; the batch that passes it
	// closes the message.
	maxMultiBytes = 256 << 10
	// multiRetry is how long a gateway publishes single batches after a
	// multi message found no worker subscribed.
	multiRetry = time.Second
)

// recentMulti is the number of multi messages whose delivery ids a
// gateway remembers, to find their batches when a no-responders status
// comes back (it comes right after the publish; older ones are looked up
// in the whole in-flight table).
const recentMulti = 64

// multiLog remembers the delivery ids of the latest multi messages.
type multiLog struct {
	mu  sync.Mutex
	ids [recentMulti]uint64   // the message's number, by slot
	ds  [recentMulti][]uint64 // its deliveries
}

// record notes that multi message id carried deliveries ds.
func (l *multiLog) record(id uint64, sends []resend) {
	l.mu.Lock()
	i := id % recentMulti
	l.ids[i] = id
	ds := l.ds[i][:0]
	for _, r := range sends {
		ds = append(ds, r.d.id)
	}
	l.ds[i] = ds
	l.mu.Unlock()
}

// lookup appends the deliveries of multi message id to dst; ok is false
// when it is no longer remembered.
func (l *multiLog) lookup(id uint64, dst []uint64) (_ []uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := id % recentMulti
	if l.ids[i] != id {
		return dst, false
	}
	return append(dst, l.ds[i]...), true
}

// outbox is what the publisher goroutine has still to publish.
type outbox struct {
	mu      sync.Mutex
	pending []resend
	spare   []resend      // the publisher's slice, handed back empty
	wake    chan struct{} // capacity 1: the publisher has work
	awake   bool          // the publisher was woken and has not emptied pending yet
}

// enqueueSends hands sends to the publisher goroutine, which publishes
// them in order. Without a publisher (a Server that was not started),
// the caller publishes them itself.
func (s *Server) enqueueSends(sends []resend) {
	o := &s.out
	o.mu.Lock()
	if o.wake == nil {
		o.mu.Unlock()
		s.publishSends(sends)
		return
	}
	o.pending = append(o.pending, sends...)
	wake := !o.awake
	o.awake = true
	o.mu.Unlock()
	if wake {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
}

// beforeTake, when set (tests), runs in the publisher each time it woke,
// before it takes the outbox: a test holds it there to make the batches
// of several clients wait together.
var beforeTake atomic.Pointer[func(s *Server)]

// publisher publishes what enqueueSends queued, until quit.
func (s *Server) publisher(wake <-chan struct{}) {
	o := &s.out
	for {
		select {
		case <-s.quit:
			return
		case <-wake:
		}
		if hook := beforeTake.Load(); hook != nil {
			(*hook)(s)
		}
		for {
			o.mu.Lock()
			if len(o.pending) == 0 {
				o.awake = false
				o.mu.Unlock()
				break
			}
			take := o.pending
			o.pending = o.spare[:0]
			o.spare = nil
			o.mu.Unlock()
			s.publishSends(take)
			clear(take)
			o.mu.Lock()
			if cap(take) <= 4096 {
				o.spare = take[:0]
			}
			o.mu.Unlock()
		}
	}
}

// publishSends publishes sends: alone, one batch goes out as an
// EventBatch; several as EventBatches messages, unless multi messages
// are off for now.
func (s *Server) publishSends(sends []resend) {
	if len(sends) == 1 || time.Now().UnixNano() < s.multiOffUntil.Load() {
		for _, r := range sends {
			s.publish(r.d, r.attempt)
		}
		return
	}
	for len(sends) > 0 {
		n := s.publishMulti(sends)
		sends = sends[n:]
	}
}

// publishMulti publishes the first batches of sends, at most
// maxMultiBatches and about maxMultiBytes, and returns how many it took:
// one alone goes as an EventBatch.
func (s *Server) publishMulti(sends []resend) int {
	sends = sends[:min(len(sends), maxMultiBatches)]
	bp := encodePool.Get().(*[]byte)
	buf := (*bp)[:0]
	id := s.nextMulti.Add(1)
	now := time.Now().UnixNano()
	n := 0
	for _, r := range sends {
		batch := s.batchOf(r.d, r.attempt)
		buf = bus.AppendBatchItem(buf, &batch)
		r.d.multi.Store(id)
		r.d.published.Store(now)
		n++
		if len(buf) >= maxMultiBytes {
			break
		}
	}
	if n == 1 {
		// Too big to share: an EventBatch of its own.
		*bp = buf
		encodePool.Put(bp)
		s.publish(sends[0].d, sends[0].attempt)
		return 1
	}
	s.multis.record(id, sends[:n])
	var rb [96]byte
	reply := string(strconv.AppendUint(append(append(rb[:0], s.ackPrefix...), 'm'), id, 10))
	err := s.nc.PublishRequest(s.subj.EventsMulti(), reply, buf)
	s.stats.eventMsgs.Add(1)
	s.stats.multiMsgs.Add(1)
	*bp = buf
	if cap(buf) <= 1<<20 {
		encodePool.Put(bp)
	}
	if err != nil {
		s.log.Warn("event batches not published; will retry", "batches", n, "err", err)
	}
	return n
}

// onMultiAck handles an Acks message, the answer to a multi message
// (onAck takes the no-responders status apart).
func (s *Server) onMultiAck(m *nats.Msg) {
	var ack bus.Ack
	var bad error
	err := bus.RangeAcks(m.Data, func(b []byte) bool {
		if bad = bus.DecodeAck(b, &ack); bad != nil {
			return false
		}
		s.handleAck(ack.Delivery, &ack, m)
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		s.stats.badAcks.Add(1)
		s.log.Warn("malformed acks dropped", "err", err)
	}
}

// multiNoResponders publishes again, one by one, the batches of multi
// message id, which reached no worker, and turns multi messages off for
// multiRetry. The batches go as the same attempt (nobody had them).
func (s *Server) multiNoResponders(id uint64) {
	nowNs := time.Now().UnixNano()
	s.multiOffUntil.Store(nowNs + int64(multiRetry))
	ids, known := s.multis.lookup(id, nil)
	s.infMu.Lock()
	var again []*delivery
	if known {
		for _, did := range ids {
			if d := s.inflight[did]; d != nil && d.multi.Load() == id && d.state == deliveryOut {
				again = append(again, d)
			}
		}
	} else {
		for _, d := range s.inflight {
			if d.multi.Load() == id && d.state == deliveryOut {
				again = append(again, d)
			}
		}
	}
	// In delivery order: a client's order does not depend on it (one
	// batch per client in flight), but the publish order stays fair.
	sortDeliveries(again)
	for _, d := range again {
		d.multi.Store(0)
		s.releaseLocked(d)
		s.queueLocked(d)
	}
	sends := s.pumpLocked(nowNs, nil)
	s.infMu.Unlock()
	s.send(sends)
}

// multiRefused turns multi messages off for good when the NATS server
// refused to let this gateway publish them (a bus user whose permissions
// predate them): err is an asynchronous error of the bus connection. The
// batches of the refused messages time out and go again as single
// batches.
func (s *Server) multiRefused(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+s.subj.EventsMulti()+`"`) {
		return
	}
	if s.multiOffUntil.Swap(math.MaxInt64) != math.MaxInt64 {
		s.log.Warn("the bus refuses multi messages to this gateway: single event batches only (give the gateway user the permission to publish "+
			s.subj.EventsMulti()+", docs/security.md)", "err", err)
	}
}

// sortDeliveries sorts ds by delivery id (few: one multi message).
func sortDeliveries(ds []*delivery) {
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && ds[j].id < ds[j-1].id; j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}
