package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Scope is what a token may do. Scopes are ordered: a token of a scope may
// also do everything of the scopes below it (admin ⊇ send ⊇ read ⊇
// metrics).
type Scope uint8

// The scopes. The zero Scope is invalid.
const (
	// ScopeMetrics: only what Require(ScopeMetrics, …) guards (the node's
	// /metrics), for a Prometheus scraper; no API method.
	ScopeMetrics Scope = iota + 1
	// ScopeRead: metrics, plus the queries (isOnline, counts, lists,
	// getClientInfo, getSession, getClientSessionsByGroup, getStats), GET
	// /api and its OpenAPI document.
	ScopeRead
	// ScopeSend: read, plus sendToClient, sendToUid, sendToGroup,
	// sendToAll, sendToClients, task and taskWait.
	ScopeSend
	// ScopeAdmin: everything, including closeClient, bindUid, unbindUid,
	// joinGroup, leaveGroup, unGroup and the session mutations.
	ScopeAdmin
)

var scopeNames = [...]string{ScopeMetrics: "metrics", ScopeRead: "read", ScopeSend: "send", ScopeAdmin: "admin"}

// String returns "metrics", "read", "send" or "admin" ("invalid"
// otherwise).
func (s Scope) String() string {
	if s < ScopeMetrics || s > ScopeAdmin {
		return "invalid"
	}
	return scopeNames[s]
}

// ParseScope returns the scope named s ("metrics", "read", "send" or
// "admin").
func ParseScope(s string) (Scope, error) {
	for sc := ScopeMetrics; sc <= ScopeAdmin; sc++ {
		if scopeNames[sc] == s {
			return sc, nil
		}
	}
	return 0, fmt.Errorf("httpapi: unknown scope %q (want metrics, read, send or admin)", s)
}

// methodScopes is the scope each method needs, by canonical name. A
// method missing here needs ScopeAdmin (fail closed): see scopeOf.
var methodScopes = map[string]Scope{
	"sendToClient": ScopeSend, "sendToUid": ScopeSend, "sendToGroup": ScopeSend, "sendToAll": ScopeSend,

	"isOnline": ScopeRead, "isUidOnline": ScopeRead,
	"getClientCount": ScopeRead, "getClientCountByGroup": ScopeRead,
	"getClientList": ScopeRead, "getClientListByGroup": ScopeRead, "getClientListByUid": ScopeRead,
	"getClientInfo": ScopeRead, "getUidList": ScopeRead, "getUidListByGroup": ScopeRead,
	"getUidCount": ScopeRead, "getUidCountByGroup": ScopeRead, "getGroupList": ScopeRead,
	"getClientSessionsByGroup": ScopeRead, "getSession": ScopeRead, "getStats": ScopeRead,

	// The GatewayWorker / imi ports (batch.go); closeUid stays admin.
	"sendToClients": ScopeSend, "isUidsOnline": ScopeRead, "getClientCountByGroups": ScopeRead,
	"getClientListByUids": ScopeRead, "getAllClientSessions": ScopeRead, "getAllGroupClientIdCount": ScopeRead,
	"getAllGroupUidCount": ScopeRead, "getAllGroupClientIdList": ScopeRead,

	// Tasks run business code with the caller's payload: a write, like
	// the sends.
	"task": ScopeSend, "taskWait": ScopeSend,
}

// scopeOf returns the scope method m needs.
func scopeOf(m *method) Scope {
	if sc, ok := methodScopes[m.name]; ok {
		return sc
	}
	return ScopeAdmin
}

// Token is one named API token.
type Token struct {
	// Name identifies the token in logs (never the token itself). It is
	// never shown to callers.
	Name string
	// Token is the secret a caller presents as "Authorization: Bearer
	// <token>".
	Token string
	// Scope is what the token may do.
	Scope Scope
}

// tokenEntry is a Token as the Handler keeps it: hashed.
type tokenEntry struct {
	name  string
	hash  [sha256.Size]byte
	scope Scope
}

// Reasons of failed authorizations, the label of AuthFailures.
const (
	AuthMissing     = "missing"      // no bearer token
	AuthWrong       = "wrong"        // a token that matches none
	AuthScope       = "scope"        // a valid token whose scope is too low
	AuthNotLoopback = "not_loopback" // no token configured and a remote caller
	AuthHost        = "host"         // no token configured and a Host that is not loopback
	AuthOrigin      = "origin"       // no token configured and an Origin of another site
)

// buildTokens validates the tokens of cfg (Token is an admin token named
// "token") and hashes them.
func buildTokens(cfg Config) ([]tokenEntry, error) {
	all := cfg.Tokens
	if cfg.Token != "" {
		all = append([]Token{{Name: "token", Token: cfg.Token, Scope: ScopeAdmin}}, all...)
	}
	out := make([]tokenEntry, 0, len(all))
	names := make(map[string]bool, len(all))
	hashes := make(map[[sha256.Size]byte]bool, len(all))
	for i, t := range all {
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("httpapi: token %d has no name", i)
		case names[t.Name]:
			return nil, fmt.Errorf("httpapi: token name %q used twice", t.Name)
		case t.Token == "":
			return nil, fmt.Errorf("httpapi: token %q is empty", t.Name)
		case strings.ContainsFunc(t.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return nil, fmt.Errorf("httpapi: token %q contains whitespace or control characters", t.Name)
		case t.Scope < ScopeMetrics || t.Scope > ScopeAdmin:
			return nil, fmt.Errorf("httpapi: token %q has no valid scope", t.Name)
		}
		e := tokenEntry{name: t.Name, hash: sha256.Sum256([]byte(t.Token)), scope: t.Scope}
		if hashes[e.hash] {
			return nil, fmt.Errorf("httpapi: token %q has the same secret as another token", t.Name)
		}
		names[t.Name], hashes[e.hash] = true, true
		out = append(out, e)
	}
	return out, nil
}

// authorize checks that r may do what needs scope: a bearer token of that
// scope or above, or with no token configured a loopback caller (see
// authorizeLoopback). A failure is counted in the handler's stats.
func (h *Handler) authorize(r *http.Request, scope Scope) *httpError {
	if len(h.tokens) == 0 {
		return h.authorizeLoopback(r)
	}
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	if !strings.EqualFold(scheme, "Bearer") || cred == "" {
		h.stats.authFailed(AuthMissing)
		he := newError(http.StatusUnauthorized, CodeUnauthorized, "missing bearer token")
		he.header = map[string]string{"WWW-Authenticate": `Bearer realm="gatework"`}
		return he
	}
	e := h.match(cred)
	if e == nil {
		h.stats.authFailed(AuthWrong)
		he := newError(http.StatusUnauthorized, CodeUnauthorized, "wrong bearer token")
		he.header = map[string]string{"WWW-Authenticate": `Bearer realm="gatework", error="invalid_token"`}
		return he
	}
	if e.scope < scope {
		h.stats.authFailed(AuthScope)
		if h.log.Enabled(r.Context(), slog.LevelDebug) {
			h.log.Debug("httpapi: token scope too low", "token", e.name, "path", r.URL.Path, "need", scope.String())
		}
		he := newError(http.StatusForbidden, CodeInsufficientScope, "this token's scope (%s) does not allow %s, which needs %s",
			e.scope, r.URL.Path, scope)
		he.header = map[string]string{"WWW-Authenticate": fmt.Sprintf(`Bearer realm="gatework", error="insufficient_scope", scope="%s"`, scope)}
		return he
	}
	return nil
}

// authorizeLoopback is authorize with no token configured. The caller
// must be on a loopback address, and since a web page open in a browser
// on this machine is such a caller too, the request must also not come
// from one: its Host must be a loopback name (a page of another site
// that rebinds its DNS name to 127.0.0.1 still sends its own name), and
// an Origin header, which browsers add to every cross-origin request and
// every POST, must be the API's own origin. Programs (curl, SDKs, other
// services) send no Origin and the Host they dialled.
func (h *Handler) authorizeLoopback(r *http.Request) *httpError {
	if !isLoopback(r.RemoteAddr) {
		h.stats.authFailed(AuthNotLoopback)
		return newError(http.StatusForbidden, CodeForbidden, "no API token is configured: only loopback callers are served")
	}
	if !isLoopbackHost(r.Host) {
		h.stats.authFailed(AuthHost)
		return newError(http.StatusForbidden, CodeForbiddenHost,
			"no API token is configured: Host %q is not 127.0.0.1, [::1] or localhost; set a token to serve other names", r.Host)
	}
	for _, o := range r.Header.Values("Origin") {
		if !isOwnOrigin(o, r) {
			h.stats.authFailed(AuthOrigin)
			return newError(http.StatusForbidden, CodeForbiddenOrigin,
				"no API token is configured: requests from web pages of other origins (Origin %q) are refused; set a token to serve them", o)
		}
	}
	return nil
}

// isLoopbackHost reports whether a Host header names this machine by a
// loopback address or as localhost, with or without a port:
// 127.0.0.0/8, ::1 (in brackets) or localhost (any case, with or without
// a trailing dot). An empty Host is not.
func isLoopbackHost(host string) bool {
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	} else if n, ok := strings.CutPrefix(host, "["); ok {
		name, _ = strings.CutSuffix(n, "]")
	}
	if strings.EqualFold(strings.TrimSuffix(name, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(name)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// isOwnOrigin reports whether origin (an Origin header) is the origin of
// r's own URL: the same scheme and the same host and port as r's Host,
// default ports included ("http://localhost" is "localhost:80"). "null"
// and anything that is not scheme://host[:port] are not.
func isOwnOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	scheme, port := "http", "80"
	if r.TLS != nil {
		scheme, port = "https", "443"
	}
	if !strings.EqualFold(u.Scheme, scheme) {
		return false
	}
	withPort := func(hostport string) string {
		if _, _, err := net.SplitHostPort(hostport); err == nil {
			return hostport
		}
		return net.JoinHostPort(strings.Trim(hostport, "[]"), port)
	}
	return strings.EqualFold(withPort(u.Host), withPort(r.Host))
}

// match returns the token whose secret is cred, or nil. It hashes cred
// (so the time does not depend on its length) and compares the hash with
// every token in constant time, without stopping at a match, so the time
// says nothing about which token matched or how many there are before it.
func (h *Handler) match(cred string) *tokenEntry {
	sum := sha256.Sum256([]byte(cred))
	found := 0 // index+1 of the match
	for i := range h.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], h.tokens[i].hash[:])
		found = subtle.ConstantTimeSelect(eq, i+1, found)
	}
	if found == 0 {
		return nil
	}
	return &h.tokens[found-1]
}

// Require returns a handler that serves next to callers authorized for
// scope under the same rules as the API: a bearer token of that scope or
// above, or with no token configured a loopback caller. Refusals are the
// API's JSON errors (401, 403), answered without reading the request body
// and followed by closing the connection, and are counted in
// Stats().AuthFailures.
// The node uses it for /metrics.
func (h *Handler) Require(scope Scope, next http.Handler) http.Handler {
	if next == nil {
		panic(errors.New("httpapi: Require with a nil handler"))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if he := h.authorize(r, scope); he != nil {
			h.refuse(w, r, he)
			return
		}
		next.ServeHTTP(w, r)
	})
}
