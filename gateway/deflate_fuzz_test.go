package gateway

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzInflate feeds arbitrary bytes to the inflate path of compressed
// messages: it must never panic nor return more than the limit, and
// whatever the gateway compresses (at every window) inflates back to the
// same bytes.
func FuzzInflate(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		{0x00},
		{0xff, 0xff, 0xff, 0xff},
		{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, // "Hello", RFC 7692 §7.2.3.1
		{0x72, 0x05, 0x00},                         // an empty final block
		bytes.Repeat([]byte("json "), 50),
	} {
		f.Add(seed, uint8(15))
	}
	f.Fuzz(func(t *testing.T, data []byte, bits uint8) {
		const limit = 1 << 16
		out, err := inflateMessage(nil, data, limit)
		if len(out) > limit && !errors.Is(err, errInflateTooLarge) {
			t.Fatalf("%d bytes inflated past the limit without errInflateTooLarge", len(out))
		}
		if len(data) > limit {
			return
		}
		bits = 8 + bits%8
		z, err := deflateMessage(data, 1, bits)
		if err != nil {
			t.Fatalf("deflate: %v", err)
		}
		back, err := inflateMessage(nil, z, limit)
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("round trip at %d bits: %v, %d bytes back of %d", bits, err, len(back), len(data))
		}
	})
}
