package cli

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli/workerflag"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/node"
)

// gatewayConfig is the gateway part of c (Logger not set).
func (c Config) gatewayConfig() gateway.Config {
	g := c.Gateway
	return gateway.Config{
		Prefix:            c.Prefix,
		Listeners:         c.Listeners,
		Shards:            g.Shards,
		Pollers:           g.Pollers,
		NoIOUring:         g.NoIOUring,
		EventTimeout:      time.Duration(g.EventTimeout),
		MaxBatch:          g.MaxBatch,
		MaxPendingEvents:  g.MaxPendingEvents,
		MaxPendingBytes:   g.MaxPendingBytes,
		HeartbeatInterval: time.Duration(g.HeartbeatInterval),
		CloseTimeout:      time.Duration(g.CloseTimeout),
		DrainWindow:       time.Duration(g.DrainWindow),
		HandshakeTimeout:  time.Duration(g.HandshakeTimeout),
		MaxConns:          g.MaxConns,
		MaxConnsPerIP:     g.MaxConnsPerIP,
		MaxNewConnsPerSec: g.MaxNewConnsPerSec,
		MaxIPs:            g.MaxIPs,
		IPRateLimit: gateway.RateLimit{
			Messages: g.IPRateLimit.Messages,
			Per:      time.Duration(g.IPRateLimit.Per),
			Burst:    g.IPRateLimit.Burst,
			Policy:   g.IPRateLimit.Policy,
		},
		MaxGroups:           g.MaxGroups,
		MaxInterestSubjects: g.MaxInterestSubjects,
		MaxQueuedBytes:      g.MaxQueuedBytes,
		MaxQueueDelay:       time.Duration(g.MaxQueueDelay),

		MaxDeliveries:        g.MaxDeliveries,
		RedeliveryBackoff:    time.Duration(g.RedeliveryBackoff),
		RedeliveryBackoffMax: time.Duration(g.RedeliveryBackoffMax),
		DeadLetterPolicy:     g.DeadLetterPolicy,
		MaxInFlight:          g.MaxInFlight,
		Dispatch:             g.Dispatch,
		UIDGateLease:         time.Duration(g.UIDGateLease),
	}
}

// Effective returns c as it is used: listeners with the gateway's
// defaults filled in (name, max_message, max_queue_bytes, message_type,
// framing), pid_file and log_file with their defaults. It is what
// `gatework config` prints.
func (c Config) Effective() Config {
	ls := make([]gateway.ListenerConfig, len(c.Listeners))
	for i, l := range c.Listeners {
		ls[i] = l.WithDefaults()
	}
	c.Listeners = ls
	c.PIDFile, c.LogFile = c.pidFile(), c.logFile()
	return c
}

// NodeConfig turns a validated c into the node's configuration, with the
// handlers of the app named by worker.app (none: no in-process worker).
// It fails if that app is not among apps.
func (c Config) NodeConfig(log *slog.Logger, apps ...App) (node.Config, error) {
	nc := node.Config{
		Prefix:  c.Prefix,
		Gateway: c.gatewayConfig(),
		NATS: node.NATSConfig{
			URL:          c.NATS.URL,
			User:         c.NATS.User,
			Password:     c.NATS.Password,
			UserRole:     bus.Role(c.NATS.UserRole),
			Token:        c.NATS.Token,
			NKeySeedFile: c.NATS.NKeySeedFile,
			CredsFile:    c.NATS.CredsFile,
			Listen:       c.NATS.Listen,
			MaxPayload:   c.NATS.MaxPayload,
			// The embedded NATS always requires credentials; an
			// external one too unless insecure_no_auth.
			InsecureNoAuth: c.NATS.InsecureNoAuth,
			TLS:            c.NATS.TLS.files(),
		},
		API: api.Config{
			QueryTimeout:   time.Duration(c.API.QueryTimeout),
			RequestTimeout: time.Duration(c.API.RequestTimeout),
			// The HTTP API's task submitter (task, taskWait).
			Tasks: api.TaskConfig{MaxAttempts: c.Worker.TaskMaxAttempts, MaxPayload: c.Worker.TaskMaxPayload},
		},
		HTTP: node.HTTPConfig{
			Addr:              c.HTTP.Addr,
			Token:             c.HTTP.Token,
			Tokens:            c.HTTP.apiTokens(),
			MaxBodyBytes:      c.HTTP.MaxBodyBytes,
			Timeout:           time.Duration(c.HTTP.Timeout),
			ReadHeaderTimeout: time.Duration(c.HTTP.ReadHeaderTimeout),
			BodyTimeout:       time.Duration(c.HTTP.BodyTimeout),
			IdleTimeout:       time.Duration(c.HTTP.IdleTimeout),
			WriteTimeout:      time.Duration(c.HTTP.WriteTimeout),
			MaxConns:          c.HTTP.MaxConns,
			HealthConns:       c.HTTP.HealthConns,
			// The chat demo brings its page (/chat on the HTTP port).
			ChatPage: c.Worker.App == "chat",
		},
		Worker: node.WorkerConfig{App: c.Worker.App, Concurrency: c.Worker.Concurrency},
		Logger: log,
	}
	if c.Worker.Webhook.URL != "" {
		// The webhook serves the events: no app runs.
		nc.Webhook = c.Worker.hookConfig()
		nc.Worker.App = "webhook"
		nc.HTTP.ChatPage = false
		return nc, nil
	}
	if c.Worker.App == appNone {
		return nc, nil
	}
	for _, a := range apps {
		if a.Name == c.Worker.App {
			h := a.Handlers
			nc.Worker.Handlers = &h
			return nc, nil
		}
	}
	return nc, fmt.Errorf("cli: worker.app: unknown app %q", c.Worker.App)
}

// apiTokens turns validated http.tokens into the API's tokens.
func (h HTTPConfig) apiTokens() []httpapi.Token {
	if len(h.Tokens) == 0 {
		return nil
	}
	out := make([]httpapi.Token, len(h.Tokens))
	for i, t := range h.Tokens {
		scope := httpapi.ScopeRead
		if t.Scope != "" {
			scope, _ = httpapi.ParseScope(t.Scope) // checked by Validate
		}
		out[i] = httpapi.Token{Name: t.Name, Token: t.Token, Scope: scope}
	}
	return out
}

// NewLogger returns the logger described by l, writing to w. An unknown
// level means info, an unknown format text (Validate reports both).
func NewLogger(l LogConfig, w io.Writer) *slog.Logger { return workerflag.NewLogger(l, w) }
