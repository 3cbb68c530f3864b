package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gatework/gatework/api"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxBodyBytes = 8 << 20
	DefaultTimeout      = 10 * time.Second
)

// Config configures a Handler. The zero value works: no token (loopback
// callers only), 8 MiB bodies, 10 s per request, no logging.
type Config struct {
	// Token is a bearer token of scope admin (named "token" in logs),
	// kept for compatibility: the same as an entry of Tokens. Empty means
	// none.
	Token string
	// Tokens are named bearer tokens, each with a scope; a request must
	// carry one whose scope allows the method as "Authorization: Bearer
	// <token>" (see Scope for which method needs which). Names and
	// secrets must be unique. With neither Token nor Tokens, only callers
	// whose r.RemoteAddr is a loopback address (127.0.0.0/8, ::1) are
	// served, all others get 403; and against web pages open in a browser
	// on the machine, a Host that is not a loopback name gets 403
	// forbidden_host, an Origin other than the API's own 403
	// forbidden_origin, and a method call without Content-Type:
	// application/json 415. Behind a reverse proxy on the same machine
	// every caller looks local: set a token there.
	Tokens []Token
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	// 0 means DefaultMaxBodyBytes (8 MiB).
	MaxBodyBytes int64
	// Timeout bounds each API call: the request's context gets this
	// deadline, and a call that runs out answers 504. 0 means
	// DefaultTimeout (10 s).
	Timeout time.Duration
	// Logger receives a warning from New when Token is empty, and the
	// details of 500 answers (Error) and of other failures (Debug).
	// nil means no logging.
	Logger *slog.Logger
}

// Handler serves the HTTP API (SPEC §4) over an api.API:
//
//	POST /api/<method>      call a method: JSON object in, {"result": …} out
//	GET  /api               the methods, their params and results, as JSON
//	GET  /api/openapi.json  an OpenAPI 3.1 document of every method
//
// Every path requires the bearer token (or, with no token configured, a
// loopback caller). Every failure is {"error":{"code":…,"message":…}} with
// the matching status; the codes are the Code constants.
//
// A Handler is safe for concurrent use; it keeps no per-request state and
// holds a request's goroutine for as long as the API call takes, at most
// Config.Timeout. It does not own the api.API: closing it is the caller's.
type Handler struct {
	api     api.API
	tokens  []tokenEntry // empty: loopback only
	stats   handlerStats
	maxBody int64
	timeout time.Duration
	log     *slog.Logger
	methods map[string]*method // by name and alias
	listing []byte             // body of GET /api
	openAPI []byte             // body of GET /api/openapi.json
}

// New returns a Handler serving a. It fails if a is nil, a limit is
// negative, or a token is invalid: empty, without a name or a valid scope,
// a name or secret used twice, or whitespace or control characters in the
// secret (it could never match a header). With no token it logs a warning
// that only loopback callers will be served.
func New(a api.API, cfg Config) (*Handler, error) {
	if a == nil {
		return nil, errors.New("httpapi: nil api")
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("httpapi: negative MaxBodyBytes %d", cfg.MaxBodyBytes)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("httpapi: negative Timeout %v", cfg.Timeout)
	}
	tokens, err := buildTokens(cfg)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		api:     a,
		maxBody: cfg.MaxBodyBytes,
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		methods: make(map[string]*method, len(methodTable)+1),
		tokens:  tokens,
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.timeout == 0 {
		h.timeout = DefaultTimeout
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for _, m := range methodTable {
		for _, name := range append([]string{m.name}, m.aliases...) {
			h.methods[name] = m
		}
	}
	if h.listing, err = listingJSON(); err != nil {
		return nil, fmt.Errorf("httpapi: method listing: %w", err)
	}
	if h.openAPI, err = openAPIJSON(); err != nil {
		return nil, fmt.Errorf("httpapi: openapi document: %w", err)
	}
	if len(h.tokens) == 0 {
		h.log.Warn("httpapi: no token configured: serving loopback callers only")
	}
	return h, nil
}

// ServeHTTP answers one request; see Handler. It counts the answer in
// Stats by method and status.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	label := h.serve(sw, r)
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	h.stats.called(label, sw.status)
}

// serve answers r and returns its label for Stats.Calls. Unknown paths and
// methods need scope read, so that they tell nothing to a caller without
// a token.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) string {
	path := r.URL.Path
	var m *method
	label, scope := callOther, ScopeRead
	switch path {
	case "/api", "/api/":
		label = callListing
	case "/api/openapi.json":
		label = callOpenAPI
	default:
		if name, ok := strings.CutPrefix(path, "/api/"); ok {
			if m = h.methods[name]; m != nil {
				label, scope = m.name, scopeOf(m)
			}
		}
	}
	if he := h.authorize(r, scope); he != nil {
		h.refuse(w, r, he)
		return label
	}
	switch label {
	case callListing:
		h.serveDoc(w, r, h.listing)
	case callOpenAPI:
		h.serveDoc(w, r, h.openAPI)
	default:
		name, ok := strings.CutPrefix(path, "/api/")
		if !ok || strings.Contains(name, "/") {
			h.answerEarly(w, r, newError(http.StatusNotFound, CodeNotFound, "no such path %q", path))
			return label
		}
		if m == nil {
			h.answerEarly(w, r, newError(http.StatusNotFound, CodeUnknownMethod, "unknown method %q", name))
			return label
		}
		if r.Method != http.MethodPost {
			he := newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s takes POST, not %s", name, r.Method)
			he.header = map[string]string{"Allow": http.MethodPost}
			h.answerEarly(w, r, he)
			return label
		}
		h.serveMethod(w, r, m)
	}
	return label
}

// isLoopback reports whether a RemoteAddr ("host:port") is 127.0.0.0/8 or
// ::1 (also as an IPv4-mapped IPv6 address).
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func (h *Handler) serveDoc(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		he := newError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s takes GET, not %s", r.URL.Path, r.Method)
		he.header = map[string]string{"Allow": "GET, HEAD"}
		h.answerEarly(w, r, he)
		return
	}
	writeBody(w, http.StatusOK, body)
}

// refuse answers he without reading r's body, and closes the connection
// after the answer. Left alone, net/http would read up to 256 KiB of an
// unread body before answering (to keep the connection), which lets a
// caller that trickles a body hold the connection and a goroutine: with
// "Connection: close" it answers at once, and with the read deadline in
// the past the drain that follows the answer stops at once too. Every
// refused authorization goes through here, with or without a body.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, he *httpError) {
	w.Header().Set("Connection", "close")
	h.writeError(w, r, he)
	rc := http.NewResponseController(w)
	_ = rc.Flush()                          // the answer first; errors mean the caller is gone
	_ = rc.SetReadDeadline(time.Unix(1, 0)) // then no more reading
}

// answerEarly answers he before the body was read: like refuse when r has
// a body (so that it is not read), else a plain answer that keeps the
// connection.
func (h *Handler) answerEarly(w http.ResponseWriter, r *http.Request, he *httpError) {
	if r.ContentLength != 0 { // -1: chunked or unknown
		h.refuse(w, r, he)
		return
	}
	h.writeError(w, r, he)
}

// serveMethod reads the body, calls m with the request's context bounded by
// the configured timeout, and writes the answer.
func (h *Handler) serveMethod(w http.ResponseWriter, r *http.Request, m *method) {
	if he := h.checkMediaType(r); he != nil {
		h.answerEarly(w, r, he)
		return
	}
	if r.ContentLength > h.maxBody {
		h.answerEarly(w, r, h.tooLarge())
		return
	}
	rw := w
	if sw, ok := w.(*statusWriter); ok {
		rw = sw.ResponseWriter // so that a too large body closes the connection
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, h.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.writeError(w, r, h.tooLarge())
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The server's body deadline (see node): the rest of the
			// body may still come, so this connection cannot go on.
			h.refuse(w, r, newError(http.StatusRequestTimeout, CodeRequestTimeout, "the body did not arrive in time"))
			return
		}
		h.writeError(w, r, invalidRequest("reading the body: %s", err))
		return
	}
	timeout := h.timeout
	if m.maxWait > 0 {
		timeout = m.maxWait + selfTimedSlack // the method's own timeout governs
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	rep, err := h.call(ctx, m, body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out, err := encodeReply(rep)
	if err != nil {
		h.writeError(w, r, fmt.Errorf("encoding the result of %s: %w", m.name, err))
		return
	}
	writeBody(w, http.StatusOK, out)
}

// call invokes m, turning a panic of the API into an internal error so the
// caller still gets a JSON answer.
func (h *Handler) call(ctx context.Context, m *method, body []byte) (rep reply, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err = fmt.Errorf("panic in %s: %v\n%s", m.name, p, debug.Stack())
		}
	}()
	return m.invoke(ctx, h.api, body)
}

func (h *Handler) tooLarge() *httpError {
	return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, "body larger than %d bytes", h.maxBody)
}

// checkMediaType checks the Content-Type of a method call. With tokens
// configured (the call carries a valid one by now) it accepts a missing
// Content-Type and application/x-www-form-urlencoded, which is what
// `curl -d '{…}'` sends unless told otherwise: the body is still parsed
// as JSON, and a body that is not JSON gets invalid_json. With no token
// both are refused: they are what a web page can send to any site
// without the browser asking first (a CORS "simple" request), while
// application/json needs the browser's preflight, which this API never
// grants.
func (h *Handler) checkMediaType(r *http.Request) *httpError {
	ct := r.Header.Get("Content-Type")
	tokenless := len(h.tokens) == 0
	switch {
	case ct == "" && tokenless:
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"no Content-Type: with no API token configured, send Content-Type: application/json (curl -H 'Content-Type: application/json' or curl --json)")
	case ct == "":
		return nil
	}
	form, ok := jsonMediaType(ct)
	switch {
	case !ok:
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"content type %q is not JSON: send application/json", ct)
	case form && tokenless:
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"content type %q (what curl -d sends) is refused with no API token configured: send Content-Type: application/json (curl -H 'Content-Type: application/json' or curl --json)", ct)
	}
	return nil
}

// jsonMediaType reports whether ct is application/json or any */*+json
// type, in UTF-8 if a charset is given, or application/x-www-form-urlencoded
// (form is then true).
func jsonMediaType(ct string) (form, ok bool) {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false, false
	}
	if mt == "application/x-www-form-urlencoded" {
		return true, true
	}
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return false, false
	}
	cs, ok := params["charset"]
	return false, !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
}

// okBody and coveredBody are the JSON shapes of a success.
type okBody struct {
	Result any `json:"result"`
}

type coveredBody struct {
	Result  any      `json:"result"`
	Partial bool     `json:"partial"`
	Missing []string `json:"missing"`
}

func encodeReply(rep reply) ([]byte, error) {
	if rep.coverage != nil {
		return marshal(coveredBody{Result: rep.result, Partial: rep.coverage.Partial, Missing: nonNil(rep.coverage.Missing)})
	}
	return marshal(okBody{Result: rep.result})
}

// marshal encodes v without HTML escaping: the API answers JSON, never
// HTML, and messages should read as sent.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeError answers err: an *httpError as is, an API error by class.
// A 500 is logged at Error with its cause; other failures at Debug.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	he, internal := classify(err)
	if internal {
		h.log.Error("httpapi: internal error", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	} else if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.log.Debug("httpapi: request failed", "path", r.URL.Path, "remote", r.RemoteAddr,
			"status", he.status, "code", he.code, "err", err)
	}
	for k, v := range he.header {
		w.Header().Set(k, v)
	}
	body, merr := marshal(errorBody{Error: errorDetail{Code: he.code, Message: he.msg}})
	if merr != nil { // cannot happen: two strings
		body = []byte(`{"error":{"code":"internal","message":"internal error"}}` + "\n")
	}
	writeBody(w, he.status, body)
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body) // the caller is gone if this fails; nothing to do
}
