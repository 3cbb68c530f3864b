package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names of a webhook request.
const (
	HeaderTimestamp = "X-Gatework-Timestamp" // Unix seconds when the request was signed
	HeaderSignature = "X-Gatework-Signature" // "sha256=" + hex HMAC-SHA256
	HeaderDelivery  = "X-Gatework-Delivery"  // the batch's delivery id (decimal)
	HeaderAttempt   = "X-Gatework-Attempt"   // the batch's delivery attempt, 1 first
	HeaderClient    = "X-Gatework-Client"    // the batch's client id
)

// DefaultReplayWindow is how far from the receiver's clock a request's
// timestamp may be for Verify to accept it.
const DefaultReplayWindow = 5 * time.Minute

// Errors of Verify. Callers branch with errors.Is.
var (
	// ErrBadSignature: the signature is missing, malformed or does not
	// match the body, timestamp and secret.
	ErrBadSignature = errors.New("webhook: bad signature")
	// ErrStale: the timestamp is missing, malformed or outside the
	// replay window.
	ErrStale = errors.New("webhook: timestamp outside the replay window")
)

// Sign returns the X-Gatework-Signature value of body signed at ts (Unix
// seconds) with secret: "sha256=" + hex(HMAC-SHA256(secret, ts "." body)).
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a request's timestamp header value ts and signature header
// value sig against body and secret at time now: the timestamp must be
// within window of now (0 means DefaultReplayWindow), the signature must
// match (compared in constant time). The error wraps ErrStale or
// ErrBadSignature.
func Verify(secret []byte, ts, sig string, body []byte, now time.Time, window time.Duration) error {
	if window <= 0 {
		window = DefaultReplayWindow
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrStale, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Errorf("%w: %v off", ErrStale, d.Round(time.Second))
	}
	if !strings.HasPrefix(sig, "sha256=") {
		return fmt.Errorf("%w: no sha256= prefix", ErrBadSignature)
	}
	if !hmac.Equal([]byte(Sign(secret, sec, body)), []byte(sig)) {
		return ErrBadSignature
	}
	return nil
}
