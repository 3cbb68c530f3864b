package cli

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/internal/framing"
)

// appNone is the worker.app that runs no in-process worker.
const appNone = "none"

// envelope is the room left in a bus message for everything but the
// client's message (ids, session, headers).
const envelope = 64 << 10

// Validate checks every key of c and reports every problem as a
// *ConfigError naming the key and what set it. apps are the names
// worker.app accepts besides "none".
func (c Config) Validate(apps []string) error {
	v := validator{c: &c}
	v.listeners()
	v.http()
	v.nats()
	v.natsAuth()
	v.worker(apps)
	v.numbers()
	v.limits()
	v.log()
	v.addresses()
	if _, err := bus.NewSubjects(c.Prefix); err != nil {
		v.bad("prefix", "%s", strings.TrimPrefix(err.Error(), "bus: "))
	}
	if len(v.probs) == 0 {
		// The gateway's own check, in case it knows more than we do.
		if err := c.gatewayConfig().Validate(); err != nil {
			key, reason := splitGatewayError(err)
			v.bad(key, "%s", reason)
		}
	}
	sortProblems(v.probs)
	return asError(v.probs)
}

// sortProblems orders problems as the configuration is read: the file by
// line, then the environment, then the flags, then the defaults.
func sortProblems(probs []*KeyError) {
	rank := func(p *KeyError) (int, int) {
		switch {
		case strings.HasPrefix(p.Where, "env "):
			return 1, 0
		case strings.HasPrefix(p.Where, "flag "):
			return 2, 0
		case p.Where == "":
			return 3, 0
		}
		i := strings.LastIndexByte(p.Where, ':')
		line, _ := strconv.Atoi(p.Where[i+1:])
		return 0, line
	}
	slices.SortStableFunc(probs, func(a, b *KeyError) int {
		ra, la := rank(a)
		rb, lb := rank(b)
		if ra != rb {
			return ra - rb
		}
		return la - lb
	})
}

type validator struct {
	c     *Config
	probs []*KeyError
}

func (v *validator) bad(key, format string, args ...any) {
	v.probs = append(v.probs, &KeyError{Key: key, Where: v.c.originOf(key), Reason: fmt.Sprintf(format, args...)})
}

// indexRe finds the listener index in the gateway's key names.
var indexRe = regexp.MustCompile(`^listeners\[\d+\]`)

// splitGatewayError turns "gateway: listeners[0].framing: framing:
// length_size: must be…" into the key "listeners[0].framing.length_size"
// and the reason.
func splitGatewayError(err error) (key, reason string) {
	msg := strings.TrimPrefix(err.Error(), "gateway: ")
	key, reason, ok := strings.Cut(msg, ": ")
	if !ok {
		return "", msg
	}
	var ce *framing.ConfigError
	if errors.As(err, &ce) {
		return key + "." + ce.Key, ce.Reason
	}
	return key, reason
}

func (v *validator) listeners() {
	ls := v.c.Listeners
	if len(ls) == 0 {
		v.bad("listeners", "at least one listener is required")
		return
	}
	names := map[string]int{}
	for i, l := range ls {
		prefix := fmt.Sprintf("listeners[%d]", i)
		// The gateway stops at the first problem: check one listener at
		// a time so that each bad listener is named.
		if err := (gateway.Config{Listeners: []gateway.ListenerConfig{l}}).Validate(); err != nil {
			key, reason := splitGatewayError(err)
			v.bad(indexRe.ReplaceAllString(key, prefix), "%s", reason)
			continue
		}
		if err := checkPort(l.Addr); err != nil {
			v.bad(prefix+".addr", "%v", err)
		}
		if l.TLS != nil {
			if err := l.TLS.CheckFiles(); err != nil {
				key, reason, _ := strings.Cut(err.Error(), ": ")
				v.bad(prefix+"."+key, "%s", reason)
			}
		}
		name := l.Name
		if name == "" {
			name = l.Protocol
		}
		if j, dup := names[name]; dup {
			v.bad(prefix+".name", "%q is already the name of listeners[%d]", name, j)
		}
		names[name] = i
	}
}

// checkPort checks that addr's port is a number from 0 to 65535.
func checkPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

func (v *validator) http() {
	h := v.c.HTTP
	if h.Addr != "" {
		if err := checkPort(h.Addr); err != nil {
			v.bad("http.addr", "%v (or \"\" for no HTTP server)", err)
		}
	}
	if strings.ContainsFunc(h.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v.bad("http.token", "contains white space or control characters")
	}
	v.tokens()
}

// tokens checks http.tokens. Problems name the entry by index and name,
// never by its secret.
func (v *validator) tokens() {
	names := map[string]int{}
	secrets := map[string]string{}
	if t := v.c.HTTP.Token; t != "" {
		secrets[t] = "http.token"
	}
	for i, t := range v.c.HTTP.Tokens {
		key := fmt.Sprintf("http.tokens[%d]", i)
		switch j, dup := names[t.Name]; {
		case t.Name == "":
			v.bad(key+".name", "required")
		case dup:
			v.bad(key+".name", "%q is also the name of http.tokens[%d]", t.Name, j)
		case t.Name == "token" && v.c.HTTP.Token != "":
			v.bad(key+".name", `"token" is the name of http.token: choose another`)
		default:
			names[t.Name] = i
		}
		switch other, dup := secrets[t.Token]; {
		case t.Token == "":
			v.bad(key+".token", "required")
		case strings.ContainsFunc(t.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			v.bad(key+".token", "contains white space or control characters")
		case dup:
			v.bad(key+".token", "the same secret as %s: each token needs its own", other)
		default:
			secrets[t.Token] = key
		}
		if t.Scope != "" {
			if _, err := httpapi.ParseScope(t.Scope); err != nil {
				v.bad(key+".scope", "%q is not a scope: want metrics, read, send or admin", t.Scope)
			}
		}
	}
}

func (v *validator) nats() {
	n := v.c.NATS
	if n.URL != "" {
		for u := range strings.SplitSeq(n.URL, ",") {
			if err := checkNATSURL(bus.RedactURL(strings.TrimSpace(u))); err != nil {
				v.bad("nats.url", "%v", err)
			}
		}
		if n.Listen != "" {
			v.bad("nats.listen", "only for the embedded NATS, but nats.url is set")
		}
		if n.Password != "" && n.User == "" {
			v.bad("nats.password", "set without nats.user")
		}
	} else {
		for _, k := range []struct{ key, val string }{
			{"nats.token", n.Token}, {"nats.nkey_seed_file", n.NKeySeedFile}, {"nats.creds_file", n.CredsFile},
		} {
			if k.val != "" {
				v.bad(k.key, "only for an external NATS (nats.url): the embedded NATS takes nats.user and nats.password")
			}
		}
		switch {
		case n.User != "" && n.Password == "":
			v.bad("nats.user", "set without nats.password: the embedded NATS needs both, or neither")
		case n.User == "" && n.Password != "":
			v.bad("nats.password", "set without nats.user: the embedded NATS needs both, or neither")
		}
		if n.Listen != "" {
			if err := checkPort(n.Listen); err != nil {
				v.bad("nats.listen", "%v", err)
			} else if host, _, _ := net.SplitHostPort(n.Listen); !isLoopbackHost(host) && n.User == "" {
				v.bad("nats.listen", "%q is reachable from other machines, whose workers cannot know the credentials generated at each start: set nats.user and nats.password", n.Listen)
			}
		}
		if n.MaxPayload < 0 {
			v.bad("nats.max_payload", "negative")
		} else {
			limit := int64(n.MaxPayload)
			if limit == 0 {
				limit = 8 << 20
			}
			for i, l := range v.c.Listeners {
				size := int64(l.MaxMessage)
				if size == 0 {
					size = framing.DefaultMaxMessage
				}
				if size+envelope > limit {
					v.bad(fmt.Sprintf("listeners[%d].max_message", i),
						"%d bytes do not fit nats.max_payload %d with %d bytes for the envelope: raise nats.max_payload", size, limit, envelope)
				}
			}
		}
	}
}

// checkNATSURL accepts nats://, tls://, ws:// and wss:// URLs and bare
// host:port.
func checkNATSURL(s string) error {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("%q is neither a URL nor host:port", s)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("%q: scheme %q is not nats, tls, ws or wss", s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (v *validator) worker(apps []string) {
	if app := v.c.Worker.App; app != appNone && !slices.Contains(apps, app) {
		v.bad("worker.app", "unknown app %q: %s or %s", app, strings.Join(apps, ", "), appNone)
	}
	if w := v.c.Worker; w.TaskProcesses > 0 && (w.Processes == 0 || w.App == appNone || w.Webhook.URL != "") {
		v.bad("worker.task_processes", "needs worker processes running an app (worker.processes > 0, worker.app not none, no webhook)")
	}
	if n := v.c.Gateway.Processes; n > maxGatewayProcesses {
		v.bad("gateway.processes", "%d is more than %d", n, maxGatewayProcesses)
	}
	wh := v.c.Worker.Webhook
	if wh.URL == "" {
		return
	}
	if u, err := url.Parse(wh.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.bad("worker.webhook.url", "%q is not an http:// or https:// URL with a host", wh.URL)
	}
	if wh.Secret == "" {
		v.bad("worker.webhook.secret", "required with worker.webhook.url: the backend checks the signature with it (GATEWORK_WORKER_WEBHOOK_SECRET)")
	}
}

// numbers rejects negative counts and durations.
func (v *validator) numbers() {
	for _, k := range scalarKeys {
		if n, ok := k.integer(v.c); ok && n < 0 {
			v.bad(k.path, "must not be negative, got %s", k.get(v.c))
		}
	}
}

// limits checks the gateway's rate limit policy (the numbers are checked
// by numbers, the listeners' limits by the gateway).
func (v *validator) limits() {
	switch p := v.c.Gateway.IPRateLimit.Policy; p {
	case "", "drop", "close", "force_close", "close_ip", "force_close_ip":
	default:
		v.bad("gateway.ip_rate_limit.policy", "%q is not drop, close, force_close, close_ip or force_close_ip", p)
	}
	switch p := v.c.Gateway.DeadLetterPolicy; p {
	case "", gateway.DeadLetterContinue, gateway.DeadLetterClose:
	default:
		v.bad("gateway.dead_letter_policy", "%q is not %s or %s", p, gateway.DeadLetterContinue, gateway.DeadLetterClose)
	}
	switch d := v.c.Gateway.Dispatch; d {
	case "", gateway.DispatchClient, gateway.DispatchUID:
	default:
		v.bad("gateway.dispatch", "%q is not %s or %s", d, gateway.DispatchClient, gateway.DispatchUID)
	}
	if l := time.Duration(v.c.Gateway.UIDGateLease); l > 0 && l < 100*time.Millisecond {
		v.bad("gateway.uid_gate_lease", "%v is below 100ms", l)
	}
	if g := v.c.Gateway; g.RedeliveryBackoffMax > 0 && g.RedeliveryBackoffMax < g.RedeliveryBackoff {
		v.bad("gateway.redelivery_backoff_max", "%v is shorter than gateway.redelivery_backoff (%v)",
			time.Duration(g.RedeliveryBackoffMax), time.Duration(g.RedeliveryBackoff))
	}
}

func (v *validator) log() {
	switch strings.ToLower(v.c.Log.Level) {
	case "debug", "info", "warn", "warning", "error":
	default:
		v.bad("log.level", "%q is not debug, info, warn or error", v.c.Log.Level)
	}
	switch v.c.Log.Format {
	case "text", "json":
	default:
		v.bad("log.format", "%q is not text or json", v.c.Log.Format)
	}
}

// addresses reports two sockets configured on the same fixed address.
func (v *validator) addresses() {
	seen := map[string]string{}
	use := func(key, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" {
			return
		}
		norm := net.JoinHostPort(strings.ToLower(host), port)
		if prev, dup := seen[norm]; dup {
			v.bad(key, "%s is already used by %s", addr, prev)
			return
		}
		seen[norm] = key
	}
	for i, l := range v.c.Listeners {
		use(fmt.Sprintf("listeners[%d].addr", i), l.Addr)
	}
	if v.c.HTTP.Addr != "" {
		use("http.addr", v.c.HTTP.Addr)
	}
	if v.c.NATS.URL == "" && v.c.NATS.Listen != "" {
		use("nats.listen", v.c.NATS.Listen)
	}
}
