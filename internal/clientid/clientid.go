// Package clientid makes and parses client ids: 20 lower-case hex
// characters, the first 10 naming the gateway incarnation that owns the
// connection and the last 10 the connection's sequence number within it.
//
// A gateway incarnation id is 40 random bits drawn at start, so an id is
// never reused after a restart (the chance that two incarnations draw the
// same id is 2^-40 per pair); sequence numbers start at 1 and only grow.
// Ids of one gateway sort in connection order, which is what cursor
// pagination relies on.
package clientid

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// Len is the length of a client id; GatewayLen the length of its gateway part.
const (
	Len        = 20
	GatewayLen = 10
	// MaxSeq is the largest sequence number an id can hold.
	MaxSeq = 1<<40 - 1
)

// ErrInvalid is returned for a string that is not a client id.
var ErrInvalid = errors.New("invalid client id")

const hexDigits = "0123456789abcdef"

// NewGateway returns a fresh random gateway incarnation id (10 hex chars).
func NewGateway() string {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("clientid: crypto/rand: %v", err))
		}
		v := binary.BigEndian.Uint64(b[:]) & MaxSeq
		if v != 0 {
			var out [GatewayLen]byte
			putHex(out[:], v)
			return string(out[:])
		}
	}
}

// Make returns the id of connection seq on gateway gw (as from NewGateway).
func Make(gw string, seq uint64) string {
	var out [Len]byte
	copy(out[:GatewayLen], gw)
	putHex(out[GatewayLen:], seq&MaxSeq)
	return string(out[:])
}

// Parse splits id into its gateway part and sequence number.
func Parse(id string) (gw string, seq uint64, err error) {
	if len(id) != Len {
		return "", 0, fmt.Errorf("%w %q: want %d hex characters", ErrInvalid, truncate(id), Len)
	}
	for i := 0; i < Len; i++ {
		c := id[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return "", 0, fmt.Errorf("%w %q: character %d is not lower-case hex", ErrInvalid, truncate(id), i+1)
		}
		if i >= GatewayLen {
			seq = seq<<4 | uint64(d)
		}
	}
	if seq == 0 {
		return "", 0, fmt.Errorf("%w %q: sequence 0", ErrInvalid, id)
	}
	return id[:GatewayLen], seq, nil
}

// Gateway returns the gateway part of a valid id, or an error.
func Gateway(id string) (string, error) {
	gw, _, err := Parse(id)
	return gw, err
}

// ValidGateway reports whether gw is a well-formed gateway id.
func ValidGateway(gw string) bool {
	if len(gw) != GatewayLen {
		return false
	}
	for i := 0; i < len(gw); i++ {
		c := gw[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func putHex(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
