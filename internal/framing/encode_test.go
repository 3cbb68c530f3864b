package framing_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/gatework/gatework/internal/framing"
)

func TestAppendFrame(t *testing.T) {
	length := func(c framing.Config) framing.Config { c.Kind = "length"; return c }
	tests := []struct {
		name    string
		cfg     framing.Config
		msg     string
		want    string
		wantErr error
	}{
		{name: "line", msg: "hello", want: "hello\n"},
		{name: "line empty", msg: "", want: "\n"},
		{name: "line binary untouched", cfg: framing.Config{Delimiter: "\r\n"}, msg: "\x00 a\t\n \r ", want: "\x00 a\t\n \r \r\n"},
		{name: "line trailing cr before crlf", cfg: framing.Config{Delimiter: "\r\n"}, msg: "a\r", want: "a\r\r\n"},
		{name: "line contains delimiter", msg: "a\nb", wantErr: framing.ErrDelimiterInMessage},
		{name: "line contains crlf", cfg: framing.Config{Delimiter: "\r\n"}, msg: "a\r\nb", wantErr: framing.ErrDelimiterInMessage},
		{name: "line overlaps self-overlapping delimiter", cfg: framing.Config{Delimiter: "aa"}, msg: "xa", wantErr: framing.ErrDelimiterInMessage},
		{name: "line overlap long", cfg: framing.Config{Delimiter: "abab"}, msg: "xab", wantErr: framing.ErrDelimiterInMessage},
		{name: "line no overlap", cfg: framing.Config{Delimiter: "abab"}, msg: "xa", want: "xaabab"},
		{name: "line at max", cfg: framing.Config{MaxMessage: 3}, msg: "abc", want: "abc\n"},
		{name: "line above max", cfg: framing.Config{MaxMessage: 3}, msg: "abcd", wantErr: framing.ErrTooLarge},

		{name: "length 1", cfg: length(framing.Config{LengthSize: 1}), msg: "hi", want: "\x02hi"},
		{name: "length 1 at field max", cfg: length(framing.Config{LengthSize: 1}), msg: strings.Repeat("x", 255), want: "\xff" + strings.Repeat("x", 255)},
		{name: "length 1 above field max", cfg: length(framing.Config{LengthSize: 1}), msg: strings.Repeat("x", 256), wantErr: framing.ErrTooLarge},
		{name: "length 2 big", cfg: length(framing.Config{LengthSize: 2}), msg: strings.Repeat("y", 258), want: "\x01\x02" + strings.Repeat("y", 258)},
		{name: "length 2 little", cfg: length(framing.Config{LengthSize: 2, ByteOrder: "little"}), msg: strings.Repeat("y", 258), want: "\x02\x01" + strings.Repeat("y", 258)},
		{name: "length 2 above field max", cfg: length(framing.Config{LengthSize: 2, MaxMessage: 70000}), msg: strings.Repeat("y", 65536), wantErr: framing.ErrTooLarge},
		{name: "length 4 big", cfg: length(framing.Config{}), msg: "\x00\n ", want: "\x00\x00\x00\x03\x00\n "},
		{name: "length 4 little", cfg: length(framing.Config{ByteOrder: "little"}), msg: "abc", want: "\x03\x00\x00\x00abc"},
		{name: "length empty", cfg: length(framing.Config{}), msg: "", want: "\x00\x00\x00\x00"},
		{name: "length offset zero-filled header", cfg: length(framing.Config{LengthSize: 2, LengthOffset: 2, HeaderSize: 6}), msg: "ab", want: "\x00\x00\x00\x02\x00\x00ab"},
		{name: "length includes header", cfg: length(framing.Config{LengthSize: 2, LengthIncludesHeader: true}), msg: "abc", want: "\x00\x05abc"},
		{name: "length 1 includes header at field max", cfg: length(framing.Config{LengthSize: 1, HeaderSize: 4, LengthIncludesHeader: true}), msg: strings.Repeat("z", 251), want: "\xff\x00\x00\x00" + strings.Repeat("z", 251)},
		{name: "length 1 includes header above field max", cfg: length(framing.Config{LengthSize: 1, HeaderSize: 4, LengthIncludesHeader: true}), msg: strings.Repeat("z", 252), wantErr: framing.ErrTooLarge},
		{name: "length at max", cfg: length(framing.Config{MaxMessage: 4}), msg: "abcd", want: "\x00\x00\x00\x04abcd"},
		{name: "length above max", cfg: length(framing.Config{MaxMessage: 4}), msg: "abcde", wantErr: framing.ErrTooLarge},

		{name: "deliver whole frame", cfg: length(framing.Config{LengthSize: 2, LengthOffset: 1, HeaderSize: 4, DeliverHeader: true}), msg: "T\x00\x02Rhi", want: "T\x00\x02Rhi"},
		{name: "deliver includes header", cfg: length(framing.Config{LengthSize: 1, LengthIncludesHeader: true, DeliverHeader: true}), msg: "\x03ab", want: "\x03ab"},
		{name: "deliver empty body", cfg: length(framing.Config{LengthSize: 1, DeliverHeader: true}), msg: "\x00", want: "\x00"},
		{name: "deliver length too small", cfg: length(framing.Config{LengthSize: 1, DeliverHeader: true}), msg: "\x01ab", wantErr: framing.ErrInvalidFrame},
		{name: "deliver length too large", cfg: length(framing.Config{LengthSize: 1, DeliverHeader: true}), msg: "\x03ab", wantErr: framing.ErrInvalidFrame},
		{name: "deliver shorter than header", cfg: length(framing.Config{LengthSize: 4, DeliverHeader: true}), msg: "\x00\x00", wantErr: framing.ErrInvalidFrame},
		{name: "deliver empty", cfg: length(framing.Config{DeliverHeader: true}), msg: "", wantErr: framing.ErrInvalidFrame},
		{name: "deliver includes smaller than header", cfg: length(framing.Config{LengthSize: 2, LengthIncludesHeader: true, DeliverHeader: true}), msg: "\x00\x01", wantErr: framing.ErrInvalidFrame},
		{name: "deliver at max", cfg: length(framing.Config{LengthSize: 1, DeliverHeader: true, MaxMessage: 3}), msg: "\x02ab", want: "\x02ab"},
		{name: "deliver above max", cfg: length(framing.Config{LengthSize: 1, DeliverHeader: true, MaxMessage: 3}), msg: "\x03abc", wantErr: framing.ErrTooLarge},

		{name: "raw", cfg: framing.Config{Kind: "raw"}, msg: "\x00 \r\n", want: "\x00 \r\n"},
		{name: "raw ignores max", cfg: framing.Config{Kind: "raw", MaxMessage: 1}, msg: "abc", want: "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("PRE")
			got, err := tt.cfg.AppendFrame(prefix, []byte(tt.msg))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if string(got) != "PRE" {
					t.Fatalf("dst changed on error: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if string(got) != "PRE"+tt.want {
				t.Fatalf("AppendFrame = %q, want %q", got[3:], tt.want)
			}
			if tt.cfg.Kind == "raw" {
				return
			}
			// The frame decodes back to the message.
			d, err := framing.NewDecoder(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			msgs, _, err := feedChunks(d, got[3:], 1)
			if err != nil || len(msgs) != 1 || string(msgs[0]) != tt.msg {
				t.Fatalf("decoded %q, %v; want %q", msgs, err, tt.msg)
			}
		})
	}
}

func TestAppendFrameDirtyDst(t *testing.T) {
	// Header bytes other than the length field are zero even if dst's
	// spare capacity is not.
	cfg := framing.Config{Kind: "length", LengthSize: 1, LengthOffset: 1, HeaderSize: 4}
	dst := bytes.Repeat([]byte{0xee}, 16)[:1]
	got, err := cfg.AppendFrame(dst, []byte("x"))
	if err != nil || string(got) != "\xee\x00\x01\x00\x00x" {
		t.Fatalf("AppendFrame = %q, %v", got, err)
	}
}

func TestAppendFrameNoAlloc(t *testing.T) {
	msg := bytes.Repeat([]byte("m"), 100)
	for _, cfg := range []framing.Config{{}, {Delimiter: strings.Repeat("-", 40)}, {Kind: "length", LengthSize: 2, LengthOffset: 2, HeaderSize: 8}, {Kind: "raw"}} {
		dst := make([]byte, 0, 256)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := cfg.AppendFrame(dst[:0], msg); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %.1f allocations per AppendFrame", cfg, allocs)
		}
	}
}

// TestRoundTrip frames many messages with AppendFrame into one stream and
// decodes it in chunks of every size from 1 up.
func TestRoundTrip(t *testing.T) {
	msgs := [][]byte{
		[]byte("hello"), {}, []byte("\x00"), []byte(" trailing space "), []byte("\t\x00\r"),
		bytes.Repeat([]byte{0xff}, 300), []byte("end"),
	}
	configs := []framing.Config{
		{}, {Delimiter: "\r\n"}, {Delimiter: "\x00\x00\xff"}, {Delimiter: "ENDEND"},
		{Kind: "length", LengthSize: 2},
		{Kind: "length", LengthSize: 2, ByteOrder: "little", LengthOffset: 3, HeaderSize: 7},
		{Kind: "length", LengthIncludesHeader: true},
		{Kind: "length", ByteOrder: "little", LengthIncludesHeader: true, LengthOffset: 2, HeaderSize: 6},
		{Kind: "length", LengthSize: 2, DeliverHeader: true, HeaderSize: 3},
		{Kind: "length", LengthSize: 2, DeliverHeader: true, LengthIncludesHeader: true},
	}
	for _, cfg := range configs {
		t.Run(cfg.String(), func(t *testing.T) {
			var want [][]byte
			var stream []byte
			for _, m := range msgs {
				if cfg.Kind == "line" || cfg.Kind == "" {
					if bytes.Contains(m, []byte(cfg.WithDefaults().Delimiter)) {
						continue
					}
				}
				if cfg.DeliverHeader { // the message is a whole frame
					inner := cfg
					inner.DeliverHeader = false
					m, _ = inner.AppendFrame(nil, m)
				}
				var err error
				stream, err = cfg.AppendFrame(stream, m)
				if err != nil {
					t.Fatalf("AppendFrame(%q): %v", m, err)
				}
				want = append(want, m)
			}
			for chunk := 1; chunk <= len(stream); chunk++ {
				d, _ := framing.NewDecoder(cfg)
				got, _, err := feedChunks(d, stream, chunk)
				if err != nil {
					t.Fatalf("chunk %d: %v", chunk, err)
				}
				if len(got) != len(want) {
					t.Fatalf("chunk %d: %d messages, want %d", chunk, len(got), len(want))
				}
				for i := range got {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("chunk %d: message %d = %q, want %q", chunk, i, got[i], want[i])
					}
				}
				if d.Buffered() != 0 {
					t.Fatalf("chunk %d: %d bytes left", chunk, d.Buffered())
				}
			}
		})
	}
}
