package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatework/gatework/httpapi"
)

// Defaults of the HTTP server's bounds (HTTPConfig).
const (
	DefaultHTTPReadHeaderTimeout = 10 * time.Second
	DefaultHTTPBodyTimeout       = 30 * time.Second
	DefaultHTTPIdleTimeout       = 2 * time.Minute
	DefaultHTTPWriteTimeout      = 10 * time.Second
	DefaultHTTPMaxConns          = 256
	DefaultHTTPHealthConns       = 8
)

// healthConnLifetime bounds everything on a connection accepted beyond
// HTTPConfig.MaxConns: reading its one request and writing its answer.
const healthConnLifetime = 5 * time.Second

// capLogEvery spaces the warnings about the connection cap.
const capLogEvery = time.Minute

// httpLimits is HTTPConfig's bounds with the defaults applied.
type httpLimits struct {
	readHeader, body, idle, write time.Duration
	maxConns, healthConns         int
}

// limits applies the defaults to hc's bounds; a negative one is an error.
func (hc HTTPConfig) limits() (httpLimits, error) {
	if hc.ReadHeaderTimeout < 0 || hc.BodyTimeout < 0 || hc.IdleTimeout < 0 || hc.WriteTimeout < 0 ||
		hc.MaxConns < 0 || hc.HealthConns < 0 {
		return httpLimits{}, errors.New("node: negative HTTP timeout or connection limit")
	}
	orDefault := func(d, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d
	}
	l := httpLimits{
		readHeader:  orDefault(hc.ReadHeaderTimeout, DefaultHTTPReadHeaderTimeout),
		body:        orDefault(hc.BodyTimeout, DefaultHTTPBodyTimeout),
		idle:        orDefault(hc.IdleTimeout, DefaultHTTPIdleTimeout),
		write:       orDefault(hc.WriteTimeout, DefaultHTTPWriteTimeout),
		maxConns:    hc.MaxConns,
		healthConns: hc.HealthConns,
	}
	if l.maxConns == 0 {
		l.maxConns = DefaultHTTPMaxConns
	}
	if l.healthConns == 0 {
		l.healthConns = DefaultHTTPHealthConns
	}
	return l, nil
}

// fitFileLimit lowers maxConns so that the HTTP server's connections
// (maxConns + healthConns) take at most a quarter of limit, the process's
// open-file limit (0: unknown, nothing changes), leaving the rest to the
// gateway's clients and the bus: slow HTTP callers must not exhaust the
// files the gateway accepts with. It keeps at least one ordinary
// connection. It reports whether it lowered maxConns.
func (l *httpLimits) fitFileLimit(limit uint64) bool {
	if limit == 0 || uint64(l.maxConns+l.healthConns) <= limit/4 {
		return false
	}
	l.maxConns = max(int(limit/4)-l.healthConns, 1)
	return true
}

// connLimiter is a listener that holds at most max+health connections
// open. The first max are served as usual. The next health ones are
// health connections: they may ask /healthz, /readyz or /metrics, get 503
// too_many_connections for anything else, are closed after one answer
// and live at most healthConnLifetime, so that a load balancer's probe and
// a scraper still get through while callers hold every ordinary
// connection. Beyond that, Accept waits for a connection to close: new
// connections wait in the kernel's listen backlog.
type connLimiter struct {
	net.Listener
	slots   chan struct{} // one per open connection
	max     int
	open    atomic.Int64
	log     *slog.Logger
	lastLog atomic.Int64 // unix nanoseconds of the last warning

	done      chan struct{}
	closeOnce sync.Once
}

func newConnLimiter(ln net.Listener, max, health int, log *slog.Logger) *connLimiter {
	return &connLimiter{
		Listener: ln,
		slots:    make(chan struct{}, max+health),
		max:      max,
		log:      log,
		done:     make(chan struct{}),
	}
}

// Accept waits for a free slot, then for a connection.
func (l *connLimiter) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.warn("http: connection limit and health reserve full: new connections wait in the listen backlog")
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	if l.open.Add(1) > int64(l.max) {
		l.warn("http: connection limit reached: serving health checks and metrics only on new connections")
		lc.hard = time.Now().Add(healthConnLifetime)
		_ = c.SetDeadline(lc.hard)
	}
	return lc, nil
}

// Close closes the listener and wakes a waiting Accept.
func (l *connLimiter) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *connLimiter) release() {
	l.open.Add(-1)
	<-l.slots
}

// warn logs msg at most once per capLogEvery.
func (l *connLimiter) warn(msg string) {
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(capLogEvery) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn(msg, "max_conns", l.max, "health_conns", cap(l.slots)-l.max)
}

// limitedConn is a connection of a connLimiter; it frees its slot when
// closed. A health connection (hard set) keeps every deadline at or
// before hard, whatever net/http asks for.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	hard time.Time // zero: an ordinary connection
	once sync.Once
}

// Close closes the connection and frees its slot (once).
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}

// CloseWrite half-closes a TCP connection, so that net/http can send its
// last answer and a FIN before closing (it checks for this method).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitedConn) clamp(t time.Time) time.Time {
	if !c.hard.IsZero() && (t.IsZero() || t.After(c.hard)) {
		return c.hard
	}
	return t
}

// SetDeadline implements net.Conn, within hard.
func (c *limitedConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }

// SetReadDeadline implements net.Conn, within hard.
func (c *limitedConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }

// SetWriteDeadline implements net.Conn, within hard.
func (c *limitedConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// healthConnKey marks the context of a request on a health connection.
type healthConnKey struct{}

// connContext is the server's ConnContext: it marks health connections.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok && !lc.hard.IsZero() {
		return context.WithValue(ctx, healthConnKey{}, true)
	}
	return ctx
}

// tooManyConnsBody is the answer on a health connection to anything but
// the health and metrics paths.
var tooManyConnsBody = []byte(`{"error":{"code":"` + httpapi.CodeTooManyConnections +
	`","message":"the HTTP server holds its maximum of connections (http.max_conns): retry later"}}` + "\n")

// guard wraps the server's handler. It bounds the time a request body
// may take: the whole body must arrive within lim.body from the end of the
// headers (then reads fail and the API answers 408), and a body nobody
// reads is not waited for longer. It bounds the time an answer may take
// to write: lim.write from its first byte, so that a caller that stops
// reading (or pipelines requests without reading the answers) does not
// hold its connection for ever. And it serves health connections.
//
// Only the API's method calls read a body (api says whether the API is
// served): a request with a body to any other path is answered without
// reading it, and its connection closed after the answer, rather than
// net/http reading up to 256 KiB of it first.
func guard(next http.Handler, lim httpLimits, api bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// Until the answer starts: room for the body and a "100
		// Continue" or an early answer.
		_ = rc.SetWriteDeadline(time.Now().Add(lim.body + lim.write))
		if r.Context().Value(healthConnKey{}) != nil {
			w.Header().Set("Connection", "close")
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
			default:
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write(tooManyConnsBody)
				_ = rc.Flush()
				_ = rc.SetReadDeadline(time.Unix(1, 0)) // do not read the body
				return
			}
		}
		switch {
		case r.ContentLength == 0: // -1: chunked or unknown
		case api && strings.HasPrefix(r.URL.Path, "/api/"):
			_ = rc.SetReadDeadline(time.Now().Add(lim.body))
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		default:
			w.Header().Set("Connection", "close")
			_ = rc.SetReadDeadline(time.Unix(1, 0))
		}
		next.ServeHTTP(&writeDeadline{ResponseWriter: w, rc: rc, d: lim.write}, r)
	})
}

// writeDeadline sets the connection's write deadline when the answer
// starts.
type writeDeadline struct {
	http.ResponseWriter
	rc      *http.ResponseController
	d       time.Duration
	started bool
}

func (w *writeDeadline) start() {
	if !w.started {
		w.started = true
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

// WriteHeader implements http.ResponseWriter.
func (w *writeDeadline) WriteHeader(code int) {
	w.start()
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *writeDeadline) Write(b []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *writeDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// deadlineBody lifts the body deadline once the body is read: net/http
// then waits in the background for the connection's next bytes, and a
// deadline that expired there would cancel the request's context while
// the API call is still running.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
