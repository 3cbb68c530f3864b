package webhook_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gatework/gatework/webhook"
)

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"version":1}`)
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	good := webhook.Sign(secret, now.Unix(), body)
	tests := []struct {
		name    string
		secret  []byte
		ts, sig string
		body    []byte
		want    error
	}{
		{"good", secret, ts, good, body, nil},
		{"other body", secret, ts, good, []byte(`{"version":2}`), webhook.ErrBadSignature},
		{"other secret", []byte("x"), ts, good, body, webhook.ErrBadSignature},
		{"timestamp changed", secret, "1800000001", good, body, webhook.ErrBadSignature},
		{"no prefix", secret, ts, good[len("sha256="):], body, webhook.ErrBadSignature},
		{"empty signature", secret, ts, "", body, webhook.ErrBadSignature},
		{"old", secret, "1799999000", webhook.Sign(secret, 1_799_999_000, body), body, webhook.ErrStale},
		{"future", secret, "1800001000", webhook.Sign(secret, 1_800_001_000, body), body, webhook.ErrStale},
		{"bad timestamp", secret, "soon", good, body, webhook.ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.secret, tt.ts, tt.sig, tt.body, now, 0)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestSignKnownVector pins the signature format that the docs' Node, PHP
// and Python checks reproduce: HMAC-SHA256 of "<ts>.<body>".
func TestSignKnownVector(t *testing.T) {
	got := webhook.Sign([]byte("key"), 1700000000, []byte("{}"))
	// printf '1700000000.{}' | openssl dgst -sha256 -hmac key
	want := "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}
