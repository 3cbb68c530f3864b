package tunclient

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestWSAccept checks the example of RFC 6455 section 1.3.
func TestWSAccept(t *testing.T) {
	if got := wsAccept([]byte("dGhlIHNhbXBsZSBub25jZQ==")); string(got[:]) != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept %s", got)
	}
	a, b := wsKey(1, 1), wsKey(1, 2)
	if a == b || a != wsKey(1, 1) {
		t.Fatal("keys not per client or not reproducible")
	}
}

func response(key []byte, extra string) string {
	a := wsAccept(key)
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: " + string(a[:]) + "\r\n" + extra + "\r\n"
}

// TestParseUpgradeResponse checks the 101 parse.
func TestParseUpgradeResponse(t *testing.T) {
	key := wsKey(7, 3)
	ok := response(key[:], "")
	for _, tc := range []struct {
		name    string
		in      string
		wantN   int
		wantErr string
	}{
		{"101", ok, len(ok), ""},
		{"101 and a frame", ok + "\x89\x00", len(ok), ""},
		{"partial", ok[:40], 0, "incomplete"},
		{"not 101", "HTTP/1.1 403 Forbidden\r\n\r\n", 0, "403"},
		{"wrong accept", response([]byte("other"), ""), 0, "Sec-WebSocket-Accept"},
		{"no accept", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, "without"},
		{"too long", "HTTP/1.1 101 x\r\n" + strings.Repeat("a", maxResponseHeader), 0, "longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := parseUpgradeResponse([]byte(tc.in), key[:])
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || n != tc.wantN {
				t.Fatalf("n %d err %v, want %d", n, err, tc.wantN)
			}
		})
	}
}

// TestParseFrame checks frames a server sends and refuses what it must not.
func TestParseFrame(t *testing.T) {
	long := append([]byte{0x82, 126, 0x01, 0x00}, bytes.Repeat([]byte{7}, 256)...)
	for _, tc := range []struct {
		name    string
		in      []byte
		op      uint8
		payload int
		n       int
		short   bool
		bad     bool
	}{
		{"ping", []byte{0x89, 0}, opPing, 0, 2, false, false},
		{"ping with data", []byte{0x89, 2, 'h', 'i', 0x81}, opPing, 2, 4, false, false},
		{"text 256", long, opBin, 256, len(long), false, false},
		{"short header", []byte{0x81}, 0, 0, 0, true, false},
		{"short payload", long[:100], 0, 0, 0, true, false},
		{"short 64-bit length", []byte{0x82, 127, 0}, 0, 0, 0, true, false},
		{"masked", []byte{0x81, 0x80, 1, 2, 3, 4}, 0, 0, 0, false, true},
		{"reserved bit", []byte{0xc1, 0}, 0, 0, 0, false, true},
		{"long ping", append([]byte{0x89, 126, 0, 126}, make([]byte, 126)...), 0, 0, 0, false, true},
		{"fragmented close", []byte{0x08, 0}, 0, 0, 0, false, true},
		{"huge", []byte{0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0}, 0, 0, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, n, err := parseFrame(tc.in)
			switch {
			case tc.short:
				if !errors.Is(err, errShort) {
					t.Fatalf("err %v, want errShort", err)
				}
			case tc.bad:
				if err == nil || errors.Is(err, errShort) {
					t.Fatalf("err %v, want a refusal", err)
				}
			default:
				if err != nil || f.opcode != tc.op || len(f.payload) != tc.payload || n != tc.n {
					t.Fatalf("frame %+v n %d err %v", f, n, err)
				}
			}
		})
	}
}

// TestAppendMasked checks a masked pong unmasks to its payload.
func TestAppendMasked(t *testing.T) {
	b := appendMasked(nil, opPong, 0x01020304, []byte("abcde"))
	if b[0] != 0x8a || b[1] != 0x85 || len(b) != 2+4+5 {
		t.Fatalf("header % x", b)
	}
	got := make([]byte, 5)
	for i := range got {
		got[i] = b[6+i] ^ b[2+i%4]
	}
	if string(got) != "abcde" {
		t.Fatalf("unmasked %q", got)
	}
}

func FuzzParseUpgradeResponse(f *testing.F) {
	key := wsKey(1, 1)
	f.Add([]byte(response(key[:], "")))
	f.Add([]byte("HTTP/1.1 101 x\r\nSec-WebSocket-Accept: y\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseUpgradeResponse(b, key[:])
		if err == nil && (n < 4 || n > len(b) || string(b[n-4:n]) != "\r\n\r\n") {
			t.Fatalf("header length %d of %d bytes", n, len(b))
		}
	})
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{0x89, 0})
	f.Add([]byte{0x82, 126, 0, 3, 1, 2, 3})
	f.Add([]byte{0x88, 2, 3, 0xe8})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := parseFrame(b)
		if err != nil {
			return
		}
		if n > len(b) || len(fr.payload) > n || (fr.opcode >= opClose && len(fr.payload) > 125) {
			t.Fatalf("frame %+v n %d of %d", fr, n, len(b))
		}
	})
}
