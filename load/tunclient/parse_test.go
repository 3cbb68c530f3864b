package tunclient

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestChecksumRFC1071 checks the sum against the example of RFC 1071
// section 3 and a real IPv4 header.
func TestChecksumRFC1071(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want uint16
	}{
		{"rfc1071", "0001f203f4f5f6f7", 0xddf2},
		{"odd length", "0001f203f4f5f6f7ab", 0xddf2 + 0xab00 - 0xffff},
		// An IPv4 header whose checksum field (b861) is right: the sum is all ones.
		{"ipv4 header", "45000073000040004011b861c0a80001c0a800c7", 0xffff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := checksumAdd(0, b); got != tc.want {
				t.Fatalf("checksumAdd = %#04x, want %#04x", got, tc.want)
			}
		})
	}
}

// TestSegmentRoundTrip builds segments and parses them back, with valid
// checksums, and catches a flipped bit.
func TestSegmentRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   uint8
		mss     uint16
		ts      tsOption
		payload []byte
	}{
		{"syn with mss", flagSYN, 1460, tsOption{}, nil},
		{"syn with mss and timestamps", flagSYN, 1460, tsOption{val: 0xfffffffe, ok: true}, nil},
		{"ack", flagACK, 0, tsOption{}, nil},
		{"ack with timestamps", flagACK, 0, tsOption{val: 1, ecr: 0x80000000, ok: true}, nil},
		{"data", flagACK | flagPSH, 0, tsOption{}, []byte("GET / HTTP/1.1\r\n\r\n")},
		{"data with timestamps", flagACK | flagPSH, 0, tsOption{val: 5, ecr: 6, ok: true}, []byte("GET / HTTP/1.1\r\n\r\n")},
		{"odd data with fin", flagACK | flagFIN, 0, tsOption{}, []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := appendSegment(nil, 0x0a010203, 0x0a4d0001, 10001, 30000, 0xfffffff0, 77, tc.flags, window, tc.mss, tc.ts, tc.payload)
			if !checksumOK(p) {
				t.Fatal("checksums do not verify")
			}
			s, err := parseSegment(p)
			if err != nil {
				t.Fatal(err)
			}
			if s.src != 0x0a010203 || s.dst != 0x0a4d0001 || s.srcPort != 10001 || s.dstPort != 30000 ||
				s.seq != 0xfffffff0 || s.ack != 77 || s.flags != tc.flags || s.window != window || s.mss != tc.mss || s.ts != tc.ts ||
				!bytes.Equal(s.payload, tc.payload) {
				t.Fatalf("parsed %+v", s)
			}
			for _, i := range []int{5, len(p) - 1} {
				q := bytes.Clone(p)
				q[i] ^= 0x10
				if checksumOK(q) {
					t.Fatalf("byte %d flipped: checksums still verify", i)
				}
			}
		})
	}
}

// TestParseSegmentRefuses checks what is not an IPv4 TCP segment.
func TestParseSegmentRefuses(t *testing.T) {
	good := appendSegment(nil, 1, 2, 3, 4, 5, 6, flagACK, window, 0, tsOption{}, []byte("x"))
	udp := bytes.Clone(good)
	udp[9] = 17
	frag := bytes.Clone(good)
	frag[6] = 0x20 // more fragments
	long := bytes.Clone(good)
	long[3] = 0xff // total length past the packet
	badOff := bytes.Clone(good)
	badOff[ipHeaderLen+12] = 0xf0 // data offset 60 > segment
	for _, tc := range []struct {
		name string
		p    []byte
	}{{"empty", nil}, {"ipv6", append([]byte{0x60}, good[1:]...)}, {"udp", udp}, {"fragment", frag},
		{"total length", long}, {"data offset", badOff}, {"short tcp", good[:30]}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseSegment(tc.p); err == nil {
				t.Fatal("parsed")
			}
		})
	}
}

// TestSeqCompare checks the comparisons across the wrap.
func TestSeqCompare(t *testing.T) {
	if !seqLT(0xfffffff0, 5) || seqLT(5, 0xfffffff0) || !seqLE(7, 7) || seqLT(7, 7) {
		t.Fatal("sequence comparison wrong across the wrap")
	}
}

func FuzzParseSegment(f *testing.F) {
	f.Add(appendSegment(nil, 1, 2, 3, 4, 5, 6, flagSYN|flagACK, window, 1460, tsOption{val: 7, ecr: 8, ok: true}, nil))
	f.Add(appendSegment(nil, 1, 2, 3, 4, 5, 6, flagACK, window, 0, tsOption{}, []byte("data")))
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := parseSegment(p)
		if err != nil {
			return
		}
		// What parses builds again into a packet that parses the same.
		q := appendSegment(nil, s.src, s.dst, s.srcPort, s.dstPort, s.seq, s.ack, s.flags, s.window, s.mss, s.ts, s.payload)
		s2, err := parseSegment(q)
		if err != nil || !checksumOK(q) || s2.seq != s.seq || s2.ts != s.ts || s2.mss != s.mss || !bytes.Equal(s2.payload, s.payload) {
			t.Fatalf("rebuilt %x: %v", q, err)
		}
	})
}

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
