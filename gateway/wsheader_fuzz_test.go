package gateway

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// FuzzParseHeader checks the gateway's frame-header parser against
// gobwas/ws's ReadHeader, the reference it mirrors: the same fields and the
// same header size for every complete header, "incomplete" exactly when
// the reference runs out of bytes, and a length that is rejected as too
// large (clamped to 1<<62) when the reference finds the length's MSB set.
func FuzzParseHeader(f *testing.F) {
	for _, seed := range [][]byte{
		{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'},
		{0x82, 0xfe, 0x01, 0x00, 9, 9, 9, 9},
		{0x01, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
		{0x88, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		{0x89, 0x7f},
		{0x81},
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, ok := parseHeader(b)
		r := bytes.NewReader(b)
		want, err := ws.ReadHeader(r)
		switch {
		case errors.Is(err, ws.ErrHeaderLengthMSB):
			if !ok || h.Length != 1<<62 {
				t.Fatalf("MSB length: got ok=%v length=%d, want ok with length 1<<62", ok, h.Length)
			}
			return
		case err != nil:
			if ok {
				t.Fatalf("reference error %v, parser accepted %+v (n=%d)", err, h, n)
			}
			return
		case !ok:
			t.Fatalf("reference read %+v, parser says incomplete", want)
		}
		if want.Length > 1<<62 {
			want.Length = 1 << 62
		}
		if h != want {
			t.Fatalf("header %+v, reference %+v", h, want)
		}
		if read := len(b) - r.Len(); n != read {
			t.Fatalf("header size %d, reference read %d", n, read)
		}
	})
}
