package framing_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/gatework/gatework/internal/framing"
)

// feedChunks feeds stream to d in chunks of the given size (the last one
// shorter) and returns copies of the messages emitted, the error of the
// first failing Feed, and how many bytes had been fed when it failed.
func feedChunks(d *framing.Decoder, stream []byte, chunk int) (msgs [][]byte, fedAtErr int, err error) {
	emit := func(m []byte) error {
		msgs = append(msgs, bytes.Clone(m))
		return nil
	}
	for off := 0; off < len(stream); off += chunk {
		end := min(off+chunk, len(stream))
		if err := d.Feed(stream[off:end], emit); err != nil {
			return msgs, end, err
		}
	}
	return msgs, 0, nil
}

// le and be build length fields.
func be(v uint64, size int) string {
	b := make([]byte, size)
	for i := range size {
		b[size-1-i] = byte(v >> (8 * i))
	}
	return string(b)
}

func le(v uint64, size int) string {
	b := make([]byte, size)
	for i := range size {
		b[i] = byte(v >> (8 * i))
	}
	return string(b)
}

type decodeCase struct {
	name    string
	cfg     framing.Config
	stream  string
	want    []string // messages emitted (before the error, if any)
	pending int      // Buffered() at the end when no error
	wantErr error    // sentinel, nil if none
	errAt   int      // with wantErr: bytes fed when the error must surface, fed one at a time
}

func lineCases() []decodeCase {
	crlf := framing.Config{Delimiter: "\r\n"}
	return []decodeCase{
		{name: "single", stream: "hello\n", want: []string{"hello"}},
		{name: "several", stream: "a\nbc\ndef\n", want: []string{"a", "bc", "def"}},
		{name: "empty messages", stream: "\n\nx\n\n", want: []string{"", "", "x", ""}},
		{name: "binary untouched", stream: "\x00 a\r \t \x00\n  \n", want: []string{"\x00 a\r \t \x00", "  "}},
		{name: "partial tail kept", stream: "a\nbcd", want: []string{"a"}, pending: 3},
		{name: "crlf", cfg: crlf, stream: "ab\r\ncd\r\n", want: []string{"ab", "cd"}},
		{name: "crlf lone cr and lf are data", cfg: crlf, stream: "a\rb\nc\r\r\n\n\r\n", want: []string{"a\rb\nc\r", "\n"}},
		{name: "crlf empty", cfg: crlf, stream: "\r\n\r\n", want: []string{"", ""}},
		{name: "crlf partial delimiter pending", cfg: crlf, stream: "ab\r\nxy\r", want: []string{"ab"}, pending: 3},
		{name: "self-overlapping delimiter", cfg: framing.Config{Delimiter: "aa"}, stream: "xaaayaa", want: []string{"x", "ay"}},
		{name: "long delimiter", cfg: framing.Config{Delimiter: "<END>"}, stream: "one<EN<END><END>two<END", want: []string{"one<EN", ""}, pending: 7},
		{name: "partial match restarts", cfg: framing.Config{Delimiter: "abd"}, stream: "xabcabdy", want: []string{"xabc"}, pending: 1},

		{name: "max exact", cfg: framing.Config{MaxMessage: 3}, stream: "abc\n\nab\n", want: []string{"abc", "", "ab"}},
		{name: "max exact pending", cfg: framing.Config{MaxMessage: 3}, stream: "abc", pending: 3},
		{name: "max plus one with delimiter", cfg: framing.Config{MaxMessage: 3}, stream: "ab\nabcd\n",
			want: []string{"ab"}, wantErr: framing.ErrTooLarge, errAt: 7},
		{name: "max plus one without delimiter", cfg: framing.Config{MaxMessage: 3}, stream: "abcdefgh",
			wantErr: framing.ErrTooLarge, errAt: 4},
		{name: "crlf max exact", cfg: framing.Config{Delimiter: "\r\n", MaxMessage: 3}, stream: "abc\r\n", want: []string{"abc"}},
		{name: "crlf max: trailing cr may be delimiter", cfg: framing.Config{Delimiter: "\r\n", MaxMessage: 3}, stream: "abc\r", pending: 4},
		{name: "crlf max: cr then other byte", cfg: framing.Config{Delimiter: "\r\n", MaxMessage: 3}, stream: "abc\rx\r\n",
			wantErr: framing.ErrTooLarge, errAt: 5},
		{name: "crlf max: cr cr", cfg: framing.Config{Delimiter: "\r\n", MaxMessage: 3}, stream: "abc\r\r\n",
			wantErr: framing.ErrTooLarge, errAt: 5},
		{name: "long delimiter at max", cfg: framing.Config{Delimiter: "<END>", MaxMessage: 2}, stream: "ab<EN", pending: 5},
		{name: "long delimiter broken at max", cfg: framing.Config{Delimiter: "<END>", MaxMessage: 2}, stream: "ab<ENX",
			wantErr: framing.ErrTooLarge, errAt: 6},
		{name: "overlapping delimiter beyond max", cfg: framing.Config{Delimiter: "aab", MaxMessage: 2}, stream: "xxaab",
			want: []string{"xx"}},
		{name: "overlapping delimiter shifts past max", cfg: framing.Config{Delimiter: "aab", MaxMessage: 2}, stream: "xxaaab",
			wantErr: framing.ErrTooLarge, errAt: 5},
	}
}

func lengthCases() []decodeCase {
	l1 := framing.Config{Kind: "length", LengthSize: 1}
	l2be := framing.Config{Kind: "length", LengthSize: 2}
	l2le := framing.Config{Kind: "length", LengthSize: 2, ByteOrder: "little"}
	l4be := framing.Config{Kind: "length"}
	l4le := framing.Config{Kind: "length", ByteOrder: "little"}
	// Swoole-like header: 2 bytes of type, 4-byte length, 2 reserved bytes.
	off := framing.Config{Kind: "length", LengthSize: 4, LengthOffset: 2, HeaderSize: 8}
	offLE := framing.Config{Kind: "length", LengthSize: 2, ByteOrder: "little", LengthOffset: 1, HeaderSize: 5}
	incl := framing.Config{Kind: "length", LengthSize: 2, LengthIncludesHeader: true}
	inclOff := framing.Config{Kind: "length", LengthSize: 1, LengthOffset: 1, HeaderSize: 3, LengthIncludesHeader: true}
	deliver := framing.Config{Kind: "length", LengthSize: 2, LengthOffset: 1, HeaderSize: 4, DeliverHeader: true}
	deliverIncl := framing.Config{Kind: "length", LengthSize: 1, HeaderSize: 2, LengthIncludesHeader: true, DeliverHeader: true}
	max4 := framing.Config{Kind: "length", LengthSize: 2, MaxMessage: 4}
	max4Deliver := framing.Config{Kind: "length", LengthSize: 2, MaxMessage: 4, DeliverHeader: true}
	return []decodeCase{
		{name: "1 byte", cfg: l1, stream: "\x05hello\x00\x03a\x00b", want: []string{"hello", "", "a\x00b"}},
		{name: "1 byte 255", cfg: l1, stream: "\xff" + strings.Repeat("z", 255), want: []string{strings.Repeat("z", 255)}},
		{name: "2 byte big", cfg: l2be, stream: be(3, 2) + "abc" + be(0, 2) + be(300, 2) + strings.Repeat("q", 300),
			want: []string{"abc", "", strings.Repeat("q", 300)}},
		{name: "2 byte little", cfg: l2le, stream: le(3, 2) + "abc" + le(300, 2) + strings.Repeat("q", 300),
			want: []string{"abc", strings.Repeat("q", 300)}},
		{name: "4 byte big", cfg: l4be, stream: be(4, 4) + "\r\n \n" + be(1, 4) + "\x00", want: []string{"\r\n \n", "\x00"}},
		{name: "4 byte little", cfg: l4le, stream: le(4, 4) + "abcd" + le(70000, 4) + strings.Repeat("w", 70000),
			want: []string{"abcd", strings.Repeat("w", 70000)}},
		{name: "partial header pending", cfg: l4be, stream: be(1, 4) + "x" + "\x00\x00", want: []string{"x"}, pending: 2},
		{name: "partial body pending", cfg: l4be, stream: be(5, 4) + "abc", pending: 7},
		{name: "offset", cfg: off, stream: "T1" + be(2, 4) + "RR" + "hi" + "T2" + be(0, 4) + "RR",
			want: []string{"hi", ""}},
		{name: "offset little", cfg: offLE, stream: "T" + le(3, 2) + "RR" + "abc", want: []string{"abc"}},
		{name: "includes header", cfg: incl, stream: be(5, 2) + "abc" + be(2, 2), want: []string{"abc", ""}},
		{name: "includes header with offset", cfg: inclOff, stream: "T\x05Rab" + "U\x03V", want: []string{"ab", ""}},
		{name: "includes header smaller than header", cfg: incl, stream: be(2, 2) + be(1, 2) + "xyz",
			want: []string{""}, wantErr: framing.ErrInvalidFrame, errAt: 4},
		{name: "deliver header", cfg: deliver, stream: "T" + be(2, 2) + "R" + "hi" + "U" + be(0, 2) + "S",
			want: []string{"T" + be(2, 2) + "Rhi", "U" + be(0, 2) + "S"}},
		{name: "deliver includes header", cfg: deliverIncl, stream: "\x04Xab\x02Y", want: []string{"\x04Xab", "\x02Y"}},

		{name: "max exact", cfg: max4, stream: be(4, 2) + "abcd" + be(3, 2) + "abc", want: []string{"abcd", "abc"}},
		{name: "max plus one", cfg: max4, stream: be(1, 2) + "a" + be(5, 2) + "abcde",
			want: []string{"a"}, wantErr: framing.ErrTooLarge, errAt: 5},
		{name: "max counts frame when delivered", cfg: max4Deliver, stream: be(2, 2) + "ab" + be(3, 2) + "abc",
			want: []string{be(2, 2) + "ab"}, wantErr: framing.ErrTooLarge, errAt: 6},
		{name: "4 GiB claim", cfg: l4be, stream: "\xff\xff\xff\xff" + "abc", wantErr: framing.ErrTooLarge, errAt: 4},
		{name: "4 GiB claim little", cfg: l4le, stream: "\xff\xff\xff\xff", wantErr: framing.ErrTooLarge, errAt: 4},
		{name: "4 GiB claim includes header", cfg: framing.Config{Kind: "length", LengthIncludesHeader: true},
			stream: "\xff\xff\xff\xff", wantErr: framing.ErrTooLarge, errAt: 4},
		{name: "max default exact", cfg: l4be, stream: be(1<<20, 4), pending: 4},
		{name: "max default plus one", cfg: l4be, stream: be(1<<20+1, 4), wantErr: framing.ErrTooLarge, errAt: 4},
	}
}

func TestDecoder(t *testing.T) {
	// Raw messages depend on the chunking: see TestDecoderRaw.
	groups := map[string][]decodeCase{"line": lineCases(), "length": lengthCases()}
	for kind, cases := range groups {
		for _, tt := range cases {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				testDecodeCase(t, tt)
			})
		}
	}
}

func testDecodeCase(t *testing.T, tt decodeCase) {
	stream := []byte(tt.stream)
	sizes := []int{1, 2, 3, 4, 5, 7, 8, 13, 64, 4096, len(stream) + 1}
	if len(stream) <= 64 {
		sizes = sizes[:0]
		for n := 1; n <= len(stream)+1; n++ {
			sizes = append(sizes, n)
		}
	}
	for _, chunk := range sizes {
		d, err := framing.NewDecoder(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		msgs, fedAt, err := feedChunks(d, stream, chunk)
		if got := strs(msgs); !equalStrs(got, tt.want) {
			t.Fatalf("chunk %d: messages %q, want %q (err %v)", chunk, got, tt.want, err)
		}
		if tt.wantErr == nil {
			if err != nil {
				t.Fatalf("chunk %d: error %v", chunk, err)
			}
			if d.Buffered() != tt.pending {
				t.Fatalf("chunk %d: Buffered() = %d, want %d", chunk, d.Buffered(), tt.pending)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) {
			t.Fatalf("chunk %d: error %v, want %v", chunk, err, tt.wantErr)
		}
		if chunk == 1 && fedAt != tt.errAt {
			t.Fatalf("error after %d bytes, want at %d (as soon as possible)", fedAt, tt.errAt)
		}
		if d.Buffered() != 0 || d.Err() != err {
			t.Fatalf("dead decoder holds %d bytes, Err() = %v", d.Buffered(), d.Err())
		}
		// Dead: the same error, nothing emitted.
		err2 := d.Feed([]byte("\n\n\x00\x00\x00\x00"), func([]byte) error {
			t.Fatal("dead decoder emitted")
			return nil
		})
		if err2 != err {
			t.Fatalf("later Feed = %v, want the same error %v", err2, err)
		}
	}
}

func strs(msgs [][]byte) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m)
	}
	return out
}

func equalStrs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecoderRaw(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		chunks []string
		want   []string
	}{
		{"each chunk a message", 0, []string{"ab", "\x00\n", " ", "cde"}, []string{"ab", "\x00\n", " ", "cde"}},
		{"empty reads are not messages", 0, []string{"", "a", ""}, []string{"a"}},
		{"at max", 3, []string{"abc", "d"}, []string{"abc", "d"}},
		{"above max is cut", 3, []string{"abcdefg"}, []string{"abc", "def", "g"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := framing.NewDecoder(framing.Config{Kind: "raw", MaxMessage: tt.max})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range tt.chunks {
				if err := d.Feed([]byte(c), func(m []byte) error { got = append(got, string(m)); return nil }); err != nil {
					t.Fatal(err)
				}
				if d.Buffered() != 0 {
					t.Fatalf("raw decoder buffers %d bytes", d.Buffered())
				}
			}
			if !equalStrs(got, tt.want) {
				t.Fatalf("messages %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecoderEmitError(t *testing.T) {
	errStop := errors.New("stop")
	for _, cfg := range []framing.Config{{}, {Kind: "length", LengthSize: 1}, {Kind: "raw", MaxMessage: 2}} {
		t.Run(cfg.String(), func(t *testing.T) {
			var stream []byte
			for _, m := range []string{"ab", "cd", "ef"} {
				stream, _ = cfg.AppendFrame(stream, []byte(m))
			}
			stream = append(stream, stream[0]) // start of a fourth message
			chunks := []int{1, 3, len(stream)}
			if cfg.Kind == "raw" {
				chunks = chunks[2:] // raw messages are the chunks
			}
			for _, chunk := range chunks {
				d, _ := framing.NewDecoder(cfg)
				var got []string
				emit := func(m []byte) error {
					got = append(got, string(m))
					if len(got) == 2 {
						return errStop
					}
					return nil
				}
				var err error
				for off := 0; off < len(stream) && err == nil; off += chunk {
					err = d.Feed(stream[off:min(off+chunk, len(stream))], emit)
				}
				if err != errStop {
					t.Fatalf("chunk %d: Feed = %v, want emit's error unchanged", chunk, err)
				}
				if !equalStrs(got, []string{"ab", "cd"}) {
					t.Fatalf("chunk %d: emitted %q, want to stop after the second", chunk, got)
				}
				if err := d.Feed(stream, emit); err != errStop || d.Buffered() != 0 {
					t.Fatalf("after emit error: Feed = %v, Buffered = %d", err, d.Buffered())
				}
				d.Reset()
				if d.Err() != nil || d.Buffered() != 0 {
					t.Fatal("Reset did not revive the decoder")
				}
				got = got[:0]
				if err := d.Feed(stream[:len(stream)-1], func(m []byte) error { got = append(got, string(m)); return nil }); err != nil {
					t.Fatal(err)
				}
				if !equalStrs(got, []string{"ab", "cd", "ef"}) {
					t.Fatalf("after Reset: %q", got)
				}
			}
		})
	}
}

func TestDecoderIdleState(t *testing.T) {
	if size := unsafe.Sizeof(framing.Decoder{}); unsafe.Sizeof(uintptr(0)) == 8 && size > 72 {
		t.Fatalf("Decoder is %d bytes, documented as 72", size)
	}
	for _, cfg := range []framing.Config{{}, {Delimiter: "\r\n"}, {Kind: "length"}, {Kind: "length", HeaderSize: 10, DeliverHeader: true}} {
		t.Run(cfg.String(), func(t *testing.T) {
			inner := cfg
			inner.DeliverHeader = false // to build a frame for cfg
			frame, err := inner.AppendFrame(nil, bytes.Repeat([]byte("m"), 90))
			if err != nil {
				t.Fatal(err)
			}
			d, _ := framing.NewDecoder(cfg)
			nop := func([]byte) error { return nil }
			for i := 1; i < len(frame); i++ {
				if err := d.Feed(frame[i-1:i], nop); err != nil {
					t.Fatal(err)
				}
				if d.Buffered() != i {
					t.Fatalf("after %d bytes Buffered() = %d", i, d.Buffered())
				}
			}
			if err := d.Feed(frame[len(frame)-1:], nop); err != nil {
				t.Fatal(err)
			}
			if d.Buffered() != 0 {
				t.Fatalf("idle decoder holds %d bytes", d.Buffered())
			}
			_ = d.Feed(frame[:5], nop)
			d.Reset()
			if d.Buffered() != 0 {
				t.Fatal("Reset kept the buffer")
			}
		})
	}
}

func TestDecoderZeroAndCopy(t *testing.T) {
	var zero framing.Decoder
	var got []string
	collect := func(m []byte) error { got = append(got, string(m)); return nil }
	if err := zero.Feed([]byte("a\nb\n"), collect); err != nil {
		t.Fatal(err)
	}
	if !equalStrs(got, []string{"a", "b"}) {
		t.Fatalf("zero Decoder: %q", got)
	}
	if err := zero.Feed(bytes.Repeat([]byte("x"), framing.DefaultMaxMessage+1), collect); !errors.Is(err, framing.ErrTooLarge) {
		t.Fatalf("zero Decoder limit: %v", err)
	}

	tmpl, err := framing.NewDecoder(framing.Config{Kind: "length", LengthSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, b := *tmpl, *tmpl
	got = got[:0]
	_ = a.Feed([]byte("\x02a"), collect)
	_ = b.Feed([]byte("\x01"), collect)
	_ = a.Feed([]byte("b"), collect)
	_ = b.Feed([]byte("z"), collect)
	if !equalStrs(got, []string{"ab", "z"}) || tmpl.Buffered() != 0 {
		t.Fatalf("copies share state: %q", got)
	}
}

// TestDecoderHugeClaimNoAlloc checks that a header claiming 4 GiB (or a
// body just over the limit) is refused from the header alone, allocating
// no more than the error.
func TestDecoderHugeClaimNoAlloc(t *testing.T) {
	for _, cfg := range []framing.Config{{Kind: "length"}, {Kind: "length", ByteOrder: "little", LengthOffset: 4, HeaderSize: 12}} {
		header := make([]byte, cfg.WithDefaults().HeaderSize)
		copy(header[cfg.LengthOffset:], "\xff\xff\xff\xff")
		for _, chunk := range []int{1, len(header)} {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			d, _ := framing.NewDecoder(cfg)
			_, _, err := feedChunks(d, header, chunk)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, framing.ErrTooLarge) {
				t.Fatalf("%v: error %v, want ErrTooLarge", cfg, err)
			}
			// A partial header may take a 512-byte buffer, and the error
			// is formatted; anything near the claimed size (or the 1 MiB
			// limit) would be a bug. The bound is loose for -race.
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
				t.Fatalf("%v chunk %d: %d bytes allocated", cfg, chunk, n)
			}
		}
	}
}

func TestDecoderWholeMessagesDoNotAllocate(t *testing.T) {
	for _, cfg := range []framing.Config{{}, {Delimiter: "\r\n"}, {Delimiter: strings.Repeat("-", 40)}, {Kind: "length", LengthSize: 2}, {Kind: "raw"}} {
		var stream []byte
		for i := range 10 {
			stream, _ = cfg.AppendFrame(stream, fmt.Appendf(nil, "message %d", i))
		}
		d, _ := framing.NewDecoder(cfg)
		n := 0
		emit := func([]byte) error { n++; return nil }
		allocs := testing.AllocsPerRun(100, func() {
			if err := d.Feed(stream, emit); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %.1f allocations per Feed of whole messages", cfg, allocs)
		}
	}
}
