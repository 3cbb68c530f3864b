package gateway

import (
	"reflect"
	"testing"
	"time"
)

// TestWithDefaults: WithDefaults fills what the docs say per protocol,
// keeps what is set, copies the listeners (the caller's are untouched)
// and is idempotent.
func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name  string
		in    ListenerConfig
		check func(t *testing.T, l ListenerConfig)
	}{
		{"ws", ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0"}, func(t *testing.T, l ListenerConfig) {
			if l.Name != "ws" || l.MessageType != "auto" || l.PingInterval != DefaultPingInterval ||
				l.IdleTimeout != DefaultIdleTimeout || l.MaxQueueBytes != DefaultMaxQueueBytes || l.QueuePolicy != QueueDisconnect {
				t.Errorf("%+v", l)
			}
		}},
		{"tcp without ping data", ListenerConfig{Protocol: "tcp", Addr: "127.0.0.1:0", MaxMessage: 4096}, func(t *testing.T, l ListenerConfig) {
			if l.PingInterval != 0 || l.IdleTimeout != 0 || l.MessageType != "" || l.Framing.Kind != "line" || l.Framing.MaxMessage != 4096 {
				t.Errorf("%+v", l)
			}
		}},
		{"rate limit", ListenerConfig{Protocol: "ws", RateLimit: RateLimit{Messages: 7}}, func(t *testing.T, l ListenerConfig) {
			if l.RateLimit != (RateLimit{Messages: 7, Per: time.Second, Burst: 7, Policy: "drop"}) {
				t.Errorf("%+v", l.RateLimit)
			}
		}},
		{"set values stay", ListenerConfig{Protocol: "ws", Name: "x", IdleTimeout: -1, PingInterval: time.Minute}, func(t *testing.T, l ListenerConfig) {
			if l.Name != "x" || l.IdleTimeout != -1 || l.PingInterval != time.Minute {
				t.Errorf("%+v", l)
			}
		}},
		{"tls", ListenerConfig{Protocol: "ws", TLS: &TLSConfig{CertFile: "c", KeyFile: "k"}}, func(t *testing.T, l ListenerConfig) {
			if l.TLS == nil || *l.TLS != (TLSConfig{CertFile: "c", KeyFile: "k"}).WithDefaults() {
				t.Errorf("%+v", l.TLS)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			var tlsBefore TLSConfig
			if in.TLS != nil {
				tlsBefore = *in.TLS
			}
			cfg := Config{Listeners: []ListenerConfig{in}}
			got := cfg.WithDefaults()
			tt.check(t, got.Listeners[0])
			if !reflect.DeepEqual(cfg.Listeners[0], tt.in) || (in.TLS != nil && *in.TLS != tlsBefore) {
				t.Errorf("the caller's listener changed: %+v", cfg.Listeners[0])
			}
			if again := got.WithDefaults(); !reflect.DeepEqual(again.Listeners, got.Listeners) {
				t.Errorf("not idempotent: %+v then %+v", got.Listeners, again.Listeners)
			}
		})
	}
	c := Config{}.WithDefaults()
	if c.Prefix != "gw" || c.EventTimeout != DefaultEventTimeout || c.MaxBatch != DefaultMaxBatch || c.Shards <= 0 ||
		c.Logger == nil || c.IPRateLimit.Per != time.Second || c.IPRateLimit.Policy != "drop" || c.IPRateLimit.enabled() {
		t.Errorf("Config{}.WithDefaults() = %+v", c)
	}
}
