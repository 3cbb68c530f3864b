package webhook

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
)

// Defaults of Config.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxInFlight      = 64
	DefaultRetries          = 2
	DefaultMaxResponseBytes = 1 << 20
	DefaultProgressInterval = time.Second
	DefaultBackoff          = 100 * time.Millisecond
	maxBackoff              = 2 * time.Second
)

// Config configures a Hook. URL is required; every other zero value works.
type Config struct {
	// URL is the backend's endpoint (http or https); every batch is
	// POSTed to it.
	URL string
	// Secret signs every request (HeaderSignature). Empty means requests
	// are still signed, with an empty key: set one in production.
	Secret string
	// Timeout bounds one POST, from the dial to the end of the answer's
	// body; 0 means DefaultTimeout (5s).
	Timeout time.Duration
	// MaxInFlight is how many batches (of different clients) are POSTed
	// at once; 0 means DefaultMaxInFlight (64). Up to 16 × MaxInFlight
	// more wait for a slot, reported to the gateways as in progress; a
	// batch beyond that is not taken (the gateway redelivers it).
	MaxInFlight int
	// Retries is how many times a POST that failed (transport error,
	// timeout, non-2xx) is tried again before the batch is failed; 0
	// means DefaultRetries (2), a negative value none.
	Retries int
	// Backoff is the first retry's back-off bound; each retry doubles it
	// (up to 2s) and waits a random time up to it (full jitter). 0 means
	// DefaultBackoff (100ms).
	Backoff time.Duration
	// MaxResponseBytes bounds an answer's body; a larger answer fails the
	// batch. 0 means DefaultMaxResponseBytes (1 MiB).
	MaxResponseBytes int64
	// ProgressInterval is how often the gateways are told that a batch is
	// still in hand; 0 means DefaultProgressInterval (1s). It must stay
	// well below the gateway's event_timeout.
	ProgressInterval time.Duration
	// Prefix is the bus subject prefix; "" means bus.DefaultPrefix.
	Prefix string
	// ID names the hook in logs and Acks; "" means a random "wh-…" id.
	ID string
	// Transport, if set, makes the requests (tests, TLS settings); nil
	// means a transport of its own with MaxInFlight connections per host.
	Transport http.RoundTripper
	// Logger receives the hook's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Stats are a Hook's counters since New. Every field only grows.
type Stats struct {
	Batches     uint64 `json:"batches"`     // batches taken from the bus
	Acked       uint64 `json:"acked"`       // batches answered by the backend and acknowledged
	Failed      uint64 `json:"failed"`      // batches failed: not acknowledged, redelivered by the gateway
	Retries     uint64 `json:"retries"`     // POSTs tried again
	BadAnswers  uint64 `json:"bad_answers"` // answers refused: not JSON, unknown action, too large
	HTTPErrors  uint64 `json:"http_errors"` // POSTs answered with a non-2xx status
	Unreachable uint64 `json:"unreachable"` // POSTs without an answer (transport error or timeout)
	Dropped     uint64 `json:"dropped"`     // batches not taken and not answered: backlog full (gateway older than protocol version 3) or stopping
	Refused     uint64 `json:"refused"`     // batches not taken, backlog full: busy nacks (the gateway sends them again when there is room)
	Malformed   uint64 `json:"malformed"`   // batches that did not decode
	Pauses      uint64 `json:"pauses"`      // times the hook left the queue group: backend unreachable
	Actions     uint64 `json:"actions"`     // actions acknowledged
	Events      uint64 `json:"events"`      // events of acknowledged batches
}

type counters struct {
	batches, acked, failed, retries, badAnswers, httpErrors, unreachable atomic.Uint64
	dropped, malformed, pauses, actions, events, refused                 atomic.Uint64
}

// Hook is a worker whose handlers are an HTTP backend. Its methods are safe
// for concurrent use.
type Hook struct {
	nc     *nats.Conn
	cfg    Config
	secret []byte
	subj   bus.Subjects
	client *http.Client
	log    *slog.Logger
	sem    chan struct{} // one token per POST in flight

	ctx    context.Context // cancelled by Stop's deadline: abandons POSTs
	cancel context.CancelFunc
	wg     sync.WaitGroup // batch goroutines, the monitor, the prober

	mu      sync.Mutex
	sub     *nats.Subscription // nil while paused or stopped
	inHand  map[*job]struct{}
	started bool
	stopped bool
	paused  bool

	stats counters
}

// job is one batch in hand.
type job struct {
	reply string
	batch bus.EventBatch
	size  int
	taken time.Time
}

// New makes a Hook that will serve events from nc for the cluster named by
// cfg.Prefix. It borrows nc: Stop does not close it. New does not touch
// the bus or the URL: call Start.
func New(nc *nats.Conn, cfg Config) (*Hook, error) {
	if nc == nil {
		return nil, errors.New("webhook: nil NATS connection")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook: url %q: want http:// or https:// with a host", cfg.URL)
	}
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	switch {
	case cfg.Timeout < 0, cfg.MaxInFlight < 0, cfg.Backoff < 0, cfg.MaxResponseBytes < 0, cfg.ProgressInterval < 0:
		return nil, errors.New("webhook: negative timeout, max_in_flight, backoff, max_response_bytes or progress interval")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.ID == "" {
		cfg.ID = "wh-" + strings.ToLower(rand.Text()[:10])
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			MaxIdleConnsPerHost:   cfg.MaxInFlight,
			MaxConnsPerHost:       cfg.MaxInFlight,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
			ForceAttemptHTTP2:     true,
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hook{
		nc:     nc,
		cfg:    cfg,
		secret: []byte(cfg.Secret),
		subj:   subj,
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		log:    cfg.Logger.With("worker", cfg.ID, "url", redact(u)),
		sem:    make(chan struct{}, cfg.MaxInFlight),
		ctx:    ctx,
		cancel: cancel,
		inHand: make(map[*job]struct{}),
	}, nil
}

// redact drops the user info and query of u (they may hold secrets).
func redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery = nil, ""
	return c.String()
}

// ID returns the hook's id, as sent in its Acks.
func (h *Hook) ID() string { return h.cfg.ID }

// Stats returns the hook's counters.
func (h *Hook) Stats() Stats {
	s := &h.stats
	return Stats{
		Batches: s.batches.Load(), Acked: s.acked.Load(), Failed: s.failed.Load(), Retries: s.retries.Load(),
		BadAnswers: s.badAnswers.Load(), HTTPErrors: s.httpErrors.Load(), Unreachable: s.unreachable.Load(),
		Dropped: s.dropped.Load(), Refused: s.refused.Load(), Malformed: s.malformed.Load(), Pauses: s.pauses.Load(),
		Actions: s.actions.Load(), Events: s.events.Load(),
	}
}

// Start probes the URL once (one signed POST of a batch without events,
// bounded by Config.Timeout): when any HTTP answer comes back it joins the
// workers' queue group; when none does, it logs a warning and keeps
// probing every second in the background, joining once the backend
// answers, while the gateways hold the events as with no worker. Start
// returns nil in both cases; it fails only when the subscription fails.
func (h *Hook) Start() error {
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return errors.New("webhook: already started")
	}
	h.started = true
	h.mu.Unlock()
	h.wg.Add(1)
	go h.monitor()
	if err := h.probe(); err != nil {
		h.log.Warn("webhook: backend does not answer; events are held until it does", "err", err)
		h.pause()
		return nil
	}
	if err := h.subscribe(); err != nil {
		return err
	}
	h.log.Info("webhook worker started", "subject", h.subj.Events(), "queue", h.subj.WorkersQueue(),
		"max_in_flight", h.cfg.MaxInFlight)
	return nil
}

// subscribe joins the queue group (unless stopped) and waits until the
// server knows.
func (h *Hook) subscribe() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped || h.sub != nil {
		return nil
	}
	backlog := 16 * h.cfg.MaxInFlight
	sub, err := h.nc.QueueSubscribe(h.subj.Events(), h.subj.WorkersQueue(), h.onMsg)
	if err != nil {
		return fmt.Errorf("webhook: subscribe %s: %w", h.subj.Events(), err)
	}
	if err := sub.SetPendingLimits(backlog, 64<<20); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("webhook: pending limits: %w", err)
	}
	if err := h.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("webhook: subscribe %s: %w", h.subj.Events(), err)
	}
	h.sub, h.paused = sub, false
	return nil
}

// pause leaves the queue group (what NATS still holds for this hook is
// dropped: the gateways redeliver it) and probes the backend every second
// until it answers, then joins again. Batches in hand go on.
func (h *Hook) pause() {
	h.mu.Lock()
	if h.paused || h.stopped {
		h.mu.Unlock()
		return
	}
	h.paused = true
	sub := h.sub
	h.sub = nil
	h.mu.Unlock()
	h.stats.pauses.Add(1)
	if sub != nil {
		_ = sub.Unsubscribe()
		h.log.Warn("webhook: backend unreachable; left the queue group, the gateways hold the events")
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-h.ctx.Done():
				return
			case <-t.C:
			}
			if h.isStopped() || h.probe() != nil {
				continue
			}
			if err := h.subscribe(); err != nil {
				h.log.Warn("webhook: join the queue group again", "err", err)
				continue
			}
			h.log.Info("webhook: backend answers again; serving events")
			return
		}
	}()
}

func (h *Hook) isStopped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopped
}

// probe POSTs a signed batch without events; any HTTP answer means the
// backend is reachable.
func (h *Hook) probe() error {
	body := []byte(`{"version":1,"probe":true,"events":[]}`)
	resp, err := h.post(h.ctx, body, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Stop leaves the queue group, waits for the batches in hand to be
// answered and acknowledged (or failed), and returns. When ctx expires
// first, the POSTs still running are cancelled, their batches are not
// acknowledged (the gateways redeliver them), and the error wraps
// ctx.Err(). Stop does not close the NATS connection; later calls return
// nil at once.
func (h *Hook) Stop(ctx context.Context) error {
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil
	}
	h.stopped = true
	sub := h.sub
	h.sub = nil
	h.mu.Unlock()
	if sub != nil {
		if err := sub.Drain(); err != nil {
			_ = sub.Unsubscribe()
		}
	}
	done := make(chan struct{})
	go func() {
		// Wait for the drain to hand over what NATS holds, then for
		// every goroutine.
		for sub != nil && sub.IsValid() && h.ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		h.cancelWhenIdle()
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		h.log.Info("webhook worker stopped")
		return nil
	case <-ctx.Done():
		h.cancel()
		<-done
		return fmt.Errorf("webhook: stop: %w", ctx.Err())
	}
}

// cancelWhenIdle cancels the context once no batch is in hand (it ends the
// monitor and a prober).
func (h *Hook) cancelWhenIdle() {
	for {
		h.mu.Lock()
		n := len(h.inHand)
		h.mu.Unlock()
		if n == 0 || h.ctx.Err() != nil {
			h.cancel()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
