package tunclient

import (
	"bytes"
	"encoding/hex"
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
		payload []byte
	}{
		{"syn with mss", flagSYN, 1460, nil},
		{"ack", flagACK, 0, nil},
		{"data", flagACK | flagPSH, 0, []byte("GET / HTTP/1.1\r\n\r\n")},
		{"odd data with fin", flagACK | flagFIN, 0, []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := appendSegment(nil, 0x0a010203, 0x0a4d0001, 10001, 30000, 0xfffffff0, 77, tc.flags, window, tc.mss, tc.payload)
			if !checksumOK(p) {
				t.Fatal("checksums do not verify")
			}
			s, err := parseSegment(p)
			if err != nil {
				t.Fatal(err)
			}
			if s.src != 0x0a010203 || s.dst != 0x0a4d0001 || s.srcPort != 10001 || s.dstPort != 30000 ||
				s.seq != 0xfffffff0 || s.ack != 77 || s.flags != tc.flags || s.window != window || s.mss != tc.mss ||
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
	good := appendSegment(nil, 1, 2, 3, 4, 5, 6, flagACK, window, 0, []byte("x"))
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
	f.Add(appendSegment(nil, 1, 2, 3, 4, 5, 6, flagSYN|flagACK, window, 1460, nil))
	f.Add(appendSegment(nil, 1, 2, 3, 4, 5, 6, flagACK, window, 0, []byte("data")))
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := parseSegment(p)
		if err != nil {
			return
		}
		// What parses builds again into a packet that parses the same.
		q := appendSegment(nil, s.src, s.dst, s.srcPort, s.dstPort, s.seq, s.ack, s.flags, s.window, s.mss, s.payload)
		s2, err := parseSegment(q)
		if err != nil || !checksumOK(q) || s2.seq != s.seq || !bytes.Equal(s2.payload, s.payload) {
			t.Fatalf("rebuilt %x: %v", q, err)
		}
	})
}
