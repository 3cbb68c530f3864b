package clientid

import (
	"errors"
	"strings"
	"testing"
)

func TestMakeParse(t *testing.T) {
	gw := NewGateway()
	if !ValidGateway(gw) {
		t.Fatalf("NewGateway returned %q", gw)
	}
	for _, seq := range []uint64{1, 2, 255, 1 << 32, MaxSeq} {
		id := Make(gw, seq)
		if len(id) != Len {
			t.Fatalf("len(%q) = %d", id, len(id))
		}
		g, s, err := Parse(id)
		if err != nil || g != gw || s != seq {
			t.Fatalf("Parse(%q) = %q, %d, %v", id, g, s, err)
		}
	}
	// Ids of one gateway sort in sequence order.
	if !(Make(gw, 9) < Make(gw, 10) && Make(gw, 255) < Make(gw, 256)) {
		t.Fatal("ids do not sort by sequence")
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []string{
		"", "abc", strings.Repeat("0", 19), strings.Repeat("0", 21),
		"0123456789ABCDEF0123", // upper case
		"0123456789abcdefg123", // not hex
		"01234567890000000000", // sequence 0
		"7f000001 0b5400000001",
		strings.Repeat("z", 5000),
	}
	for _, in := range tests {
		if _, _, err := Parse(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q): err = %v, want ErrInvalid", in, err)
		}
	}
}

func TestGatewaysDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		g := NewGateway()
		if seen[g] {
			t.Fatalf("gateway id %q drawn twice", g)
		}
		seen[g] = true
	}
}

func FuzzParse(f *testing.F) {
	f.Add("0123456789000000002a")
	f.Fuzz(func(t *testing.T, s string) {
		gw, seq, err := Parse(s)
		if err != nil {
			return
		}
		if Make(gw, seq) != s {
			t.Fatalf("Make(Parse(%q)) = %q", s, Make(gw, seq))
		}
	})
}
