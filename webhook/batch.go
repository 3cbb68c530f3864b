package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// errStatus is a non-2xx answer.
type errStatus struct{ code int }

func (e errStatus) Error() string { return "webhook: status " + strconv.Itoa(e.code) }

// onMsg is the subscription callback: it never blocks. The batch is
// decoded and handed to a goroutine of its own, which waits for a slot
// among MaxInFlight; beyond 16 × MaxInFlight batches in hand it is not
// taken: refused with a busy nack (bus.Ack.Busy; the gateway sends it
// again when there is room), or, from a gateway older than protocol
// version 3, dropped (that gateway redelivers it after its timeout).
func (h *Hook) onMsg(m *nats.Msg) {
	j := &job{reply: m.Reply, size: len(m.Data), taken: time.Now()}
	if err := bus.DecodeEventBatch(m.Data, &j.batch); err != nil || m.Reply == "" {
		h.stats.malformed.Add(1)
		h.log.Warn("webhook: malformed batch dropped", "bytes", len(m.Data), "err", err)
		return
	}
	h.mu.Lock()
	if stopping := h.ctx.Err() != nil; stopping || len(h.inHand) >= 17*h.cfg.MaxInFlight {
		h.mu.Unlock()
		if stopping || j.batch.Version < bus.VersionBusy {
			h.stats.dropped.Add(1)
			return
		}
		a := bus.BusyNack(j.batch.Delivery, j.batch.Attempt, h.cfg.ID)
		if err := h.nc.Publish(m.Reply, bus.AppendAck(nil, &a)); err != nil {
			h.stats.dropped.Add(1)
			return
		}
		h.stats.refused.Add(1)
		return
	}
	h.inHand[j] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	h.stats.batches.Add(1)
	go h.run(j)
}

// run POSTs j (waiting for a slot first) and acknowledges it, or fails it.
func (h *Hook) run(j *job) {
	defer h.wg.Done()
	select {
	case h.sem <- struct{}{}:
	case <-h.ctx.Done():
		h.fail(j, h.ctx.Err())
		return
	}
	defer func() { <-h.sem }()
	body, err := json.Marshal(newBatch(&j.batch))
	if err != nil {
		h.fail(j, fmt.Errorf("webhook: encode batch: %w", err))
		return
	}
	answer, err := h.deliver(j, body)
	if err != nil {
		if !errors.Is(err, errBadAnswer) && !isHTTPError(err) && !isTimeout(err) && h.ctx.Err() == nil {
			// No connection after every retry: stop taking batches
			// until the backend is back. (A timeout is a slow
			// backend, not a missing one.)
			h.pause()
		}
		h.fail(j, err)
		return
	}
	actions, err := parseAnswer(answer)
	if err != nil {
		h.stats.badAnswers.Add(1)
		h.fail(j, err)
		return
	}
	h.ack(j, actions)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isHTTPError(err error) bool {
	var es errStatus
	return errors.As(err, &es)
}

// deliver POSTs body, retrying transport errors, timeouts and non-2xx
// answers with exponential back-off and full jitter, and returns the body
// of the first 2xx answer. An answer over MaxResponseBytes is not retried:
// the error wraps errBadAnswer.
func (h *Hook) deliver(j *job, body []byte) ([]byte, error) {
	var err error
	bound := h.cfg.Backoff
	for try := 0; ; try++ {
		var answer []byte
		answer, err = h.postOnce(j, body)
		if err == nil || errors.Is(err, errBadAnswer) || h.ctx.Err() != nil {
			return answer, err
		}
		if try >= h.cfg.Retries {
			return nil, err
		}
		h.stats.retries.Add(1)
		wait := rand.N(bound + 1)
		bound = min(2*bound, maxBackoff)
		select {
		case <-time.After(wait):
		case <-h.ctx.Done():
			return nil, h.ctx.Err()
		}
	}
}

// postOnce makes one POST of body for j and reads a 2xx answer.
func (h *Hook) postOnce(j *job, body []byte) ([]byte, error) {
	resp, err := h.post(h.ctx, body, j)
	if err != nil {
		h.stats.unreachable.Add(1)
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // keep the connection
		h.stats.httpErrors.Add(1)
		return nil, errStatus{resp.StatusCode}
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, h.cfg.MaxResponseBytes+1))
	if err != nil {
		h.stats.unreachable.Add(1)
		return nil, fmt.Errorf("webhook: read answer: %w", err)
	}
	if int64(len(answer)) > h.cfg.MaxResponseBytes {
		h.stats.badAnswers.Add(1)
		return nil, fmt.Errorf("%w: over %d bytes", errBadAnswer, h.cfg.MaxResponseBytes)
	}
	return answer, nil
}

// post sends one signed POST of body; j, when not nil, names the batch in
// the headers.
func (h *Hook) post(ctx context.Context, body []byte, j *job) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("webhook: request: %w", err)
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gatework-webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(h.secret, ts, body))
	if j != nil {
		req.Header.Set(HeaderDelivery, strconv.FormatUint(j.batch.Delivery, 10))
		req.Header.Set(HeaderAttempt, strconv.FormatUint(uint64(j.batch.Attempt), 10))
		req.Header.Set(HeaderClient, j.batch.Client)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("webhook: post: %w", err)
	}
	return resp, nil
}

// ack acknowledges j with actions: the gateway applies them in order
// before it sends the client's next batch.
func (h *Hook) ack(j *job, actions []bus.Action) {
	h.mu.Lock()
	delete(h.inHand, j) // under mu: no progress Ack follows the final one
	h.mu.Unlock()
	b := bus.AppendAck(nil, &bus.Ack{Delivery: j.batch.Delivery, Actions: actions, Worker: h.cfg.ID})
	if err := h.nc.Publish(j.reply, b); err != nil {
		h.stats.failed.Add(1)
		h.log.Warn("webhook: ack not sent; the gateway will redeliver", "client", j.batch.Client, "err", err)
		return
	}
	h.stats.acked.Add(1)
	h.stats.actions.Add(uint64(len(actions)))
	h.stats.events.Add(uint64(len(j.batch.Events)))
}

// fail gives up j: none of its actions is applied and it is nacked
// (bus protocol 2), so the gateway publishes it again at once, to any
// worker, within its redelivery bound (then the dead letter). A batch of a
// version-1 gateway is not nacked (it would read the nack as an empty
// final ack): that gateway redelivers it after its event timeout.
func (h *Hook) fail(j *job, err error) {
	h.mu.Lock()
	delete(h.inHand, j)
	h.mu.Unlock()
	h.stats.failed.Add(1)
	h.log.Warn("webhook: batch failed; nacked, the gateway redelivers it", "client", j.batch.Client,
		"delivery", j.batch.Delivery, "attempt", j.batch.Attempt, "err", err)
	if j.batch.Version < 2 {
		return
	}
	b := bus.AppendAck(nil, &bus.Ack{Delivery: j.batch.Delivery, Nack: true, Attempt: j.batch.Attempt,
		Error: err.Error(), Worker: h.cfg.ID})
	if perr := h.nc.Publish(j.reply, b); perr != nil {
		h.log.Warn("webhook: nack not sent; the gateway redelivers after its timeout", "client", j.batch.Client, "err", perr)
	}
}

// monitor tells the gateways every ProgressInterval which batches are still
// in hand (waiting for a slot, POSTed, or between retries).
func (h *Hook) monitor() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.ProgressInterval)
	defer t.Stop()
	var buf []byte
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			minAge := h.cfg.ProgressInterval / 2
			h.mu.Lock()
			for j := range h.inHand {
				if now.Sub(j.taken) < minAge {
					continue
				}
				buf = bus.AppendAck(buf[:0], &bus.Ack{Delivery: j.batch.Delivery, Progress: true, Worker: h.cfg.ID})
				_ = h.nc.Publish(j.reply, buf)
			}
			h.mu.Unlock()
		}
	}
}
