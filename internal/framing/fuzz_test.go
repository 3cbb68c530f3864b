package framing_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/gatework/gatework/internal/framing"
)

// chunker cuts a stream into pseudo-random chunks: single bytes, short
// runs, and the whole rest, in proportions that exercise every path.
type chunker struct{ r *rand.Rand }

func newChunker(seed uint64) chunker {
	return chunker{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (c chunker) next(rest int) int {
	switch c.r.IntN(4) {
	case 0:
		return 1
	case 1:
		return min(rest, 1+c.r.IntN(4))
	case 2:
		return min(rest, 1+c.r.IntN(64))
	default:
		return rest
	}
}

// pieces cuts data into messages of pseudo-random sizes (some empty).
func (c chunker) pieces(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := min(len(data), c.r.IntN(24))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// decodeFuzz feeds stream in chunks, checking after every Feed that no
// more bytes were emitted than fed, that no message exceeds maxMsg and
// that the buffer stays within maxBuffered. It returns copies of the
// messages and the first error.
func decodeFuzz(t *testing.T, d *framing.Decoder, stream []byte, ch chunker, maxMsg, maxBuffered int) ([][]byte, error) {
	t.Helper()
	var msgs [][]byte
	emitted := 0
	emit := func(m []byte) error {
		if len(m) > maxMsg {
			t.Fatalf("emitted %d bytes, max_message %d", len(m), maxMsg)
		}
		emitted += len(m)
		msgs = append(msgs, bytes.Clone(m))
		return nil
	}
	for off := 0; off < len(stream); {
		n := ch.next(len(stream) - off)
		err := d.Feed(stream[off:off+n], emit)
		off += n
		if emitted > off {
			t.Fatalf("emitted %d bytes after %d fed", emitted, off)
		}
		if err != nil {
			if d.Buffered() != 0 {
				t.Fatalf("dead decoder holds %d bytes", d.Buffered())
			}
			return msgs, err
		}
		if d.Buffered() > maxBuffered {
			t.Fatalf("decoder holds %d bytes, at most %d expected", d.Buffered(), maxBuffered)
		}
	}
	return msgs, nil
}

func sameMessages(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages %q, want %d %q", what, len(got), got, len(want), want)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: message %d = %q, want %q", what, i, got[i], want[i])
		}
	}
}

func sameError(t *testing.T, got, want error) {
	t.Helper()
	if want == nil && got != nil || want != nil && !errors.Is(got, want) {
		t.Fatalf("error %v, want %v", got, want)
	}
}

// refLine decodes lines one byte at a time, the obvious way.
func refLine(stream []byte, delim string, maxMsg int) ([][]byte, error) {
	var msgs [][]byte
	var buf []byte
	for _, b := range stream {
		buf = append(buf, b)
		if bytes.HasSuffix(buf, []byte(delim)) {
			m := buf[:len(buf)-len(delim)]
			if len(m) > maxMsg {
				return msgs, framing.ErrTooLarge
			}
			msgs = append(msgs, bytes.Clone(m))
			buf = buf[:0]
			continue
		}
		k := 0 // bytes at the end that may start a delimiter
		for j := len(delim) - 1; j > 0; j-- {
			if bytes.HasSuffix(buf, []byte(delim[:j])) {
				k = j
				break
			}
		}
		if len(buf)-k > maxMsg {
			return msgs, framing.ErrTooLarge
		}
	}
	return msgs, nil
}

// refLength decodes length-prefixed frames one byte at a time.
func refLength(stream []byte, cfg framing.Config) ([][]byte, error) {
	c := cfg.WithDefaults()
	header := c.HeaderSize
	var msgs [][]byte
	var buf []byte
	for _, b := range stream {
		buf = append(buf, b)
		if len(buf) < header {
			continue
		}
		var v uint64
		for i := range c.LengthSize {
			bi := uint64(buf[c.LengthOffset+i])
			if c.ByteOrder == "little" {
				v |= bi << (8 * i)
			} else {
				v = v<<8 | bi
			}
		}
		frame := uint64(header) + v
		if c.LengthIncludesHeader {
			if v < uint64(header) {
				return msgs, framing.ErrInvalidFrame
			}
			frame = v
		}
		size := frame
		if !c.DeliverHeader {
			size -= uint64(header)
		}
		if size > uint64(c.MaxMessage) {
			return msgs, framing.ErrTooLarge
		}
		if uint64(len(buf)) == frame {
			m := buf
			if !c.DeliverHeader {
				m = buf[header:]
			}
			msgs = append(msgs, bytes.Clone(m))
			buf = buf[:0]
		}
	}
	return msgs, nil
}

func FuzzLineDecoder(f *testing.F) {
	f.Add("\n", uint16(0), uint64(1), []byte("hello\nworld\n\npartial"))
	f.Add("\r\n", uint16(5), uint64(2), []byte("ab\r\ncdefg\r\r\n\r\nxyz\r"))
	f.Add("aa", uint16(3), uint64(3), []byte("xaaayaazaaaa"))
	f.Add("aab", uint16(2), uint64(4), []byte("xxaaabxxaab"))
	f.Add("abab", uint16(7), uint64(5), []byte("xabababab\x00abab"))
	f.Add("\x00", uint16(1), uint64(6), []byte("\x00\x00a\x00ab\x00"))
	f.Fuzz(func(t *testing.T, delim string, maxSel uint16, seed uint64, data []byte) {
		if delim == "" {
			delim = "\n"
		}
		delim = delim[:min(len(delim), 4)]
		cfg := framing.Config{Delimiter: delim, MaxMessage: int(maxSel) % 300}
		maxMsg := cfg.WithDefaults().MaxMessage
		ch := newChunker(seed)

		// Decoding in random chunks matches the byte-at-a-time reference.
		d, err := framing.NewDecoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := refLine(data, delim, maxMsg)
		got, err := decodeFuzz(t, d, data, ch, maxMsg, maxMsg+len(delim)-1)
		sameMessages(t, "decode", got, want)
		sameError(t, err, wantErr)

		// Frames built by AppendFrame decode to their messages; a message
		// is refused only if its frame would not decode to it.
		var stream []byte
		var sent [][]byte
		for _, m := range ch.pieces(data) {
			n := len(stream)
			stream, err = cfg.AppendFrame(stream, m)
			alone, aloneErr := refLine(append(bytes.Clone(m), delim...), delim, maxMsg)
			fine := aloneErr == nil && len(alone) == 1 && bytes.Equal(alone[0], m)
			switch {
			case err == nil && !fine:
				t.Fatalf("AppendFrame accepted %q, which decodes to %q, %v", m, alone, aloneErr)
			case err == nil:
				if !bytes.Equal(stream[n:], append(bytes.Clone(m), delim...)) {
					t.Fatalf("AppendFrame(%q) = %q", m, stream[n:])
				}
				sent = append(sent, m)
			case fine:
				t.Fatalf("AppendFrame refused %q: %v", m, err)
			case !errors.Is(err, framing.ErrDelimiterInMessage) && !errors.Is(err, framing.ErrTooLarge):
				t.Fatalf("AppendFrame(%q): unexpected error %v", m, err)
			}
		}
		d.Reset()
		got, err = decodeFuzz(t, d, stream, ch, maxMsg, maxMsg+len(delim)-1)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		sameMessages(t, "round trip", got, sent)
		if d.Buffered() != 0 {
			t.Fatalf("round trip left %d bytes", d.Buffered())
		}
	})
}

func FuzzLengthDecoder(f *testing.F) {
	f.Add(uint32(0), uint16(0), uint64(1), []byte("\x00\x00\x00\x05hello\x00\x00\x00\x00\x00\x00"))
	f.Add(uint32(1), uint16(10), uint64(2), []byte("\x00\x03abc\x00\x0bhello world"))
	f.Add(uint32(2), uint16(0), uint64(3), []byte("\x02ab\x00\xff"))
	f.Add(uint32(0x1ff), uint16(50), uint64(4), []byte("T\x00\x00\x00\x09RRabc\x00\x00"))
	f.Add(uint32(0x85), uint16(8), uint64(5), []byte("\x06\x00\x00\x00ab\x00\x00\x00\x00"))
	f.Add(uint32(0x104), uint16(0), uint64(6), []byte("\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, shape uint32, maxSel uint16, seed uint64, data []byte) {
		cfg := framing.Config{
			Kind:                 "length",
			LengthSize:           []int{1, 2, 4}[shape%3],
			LengthOffset:         int(shape>>3) % 4,
			LengthIncludesHeader: shape>>7&1 == 1,
			DeliverHeader:        shape>>8&1 == 1,
			MaxMessage:           int(maxSel) % 600,
		}
		if shape>>2&1 == 1 {
			cfg.ByteOrder = "little"
		}
		if extra := int(shape>>5) % 4; extra > 0 {
			cfg.HeaderSize = cfg.LengthOffset + cfg.LengthSize + extra
		}
		if cfg.Validate() != nil {
			return // a delivered header larger than a tiny max_message
		}
		def := cfg.WithDefaults()
		maxMsg, header := def.MaxMessage, def.HeaderSize
		maxFrame := header + maxMsg
		if cfg.DeliverHeader {
			maxFrame = maxMsg
		}
		ch := newChunker(seed)

		d, err := framing.NewDecoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := refLength(data, cfg)
		got, err := decodeFuzz(t, d, data, ch, maxMsg, maxFrame)
		sameMessages(t, "decode", got, want)
		sameError(t, err, wantErr)

		// Round trip. With deliver_header, messages are whole frames, made
		// by the same framing without it.
		inner := cfg
		inner.DeliverHeader = false
		var stream []byte
		var sent [][]byte
		for _, m := range ch.pieces(data) {
			if cfg.DeliverHeader {
				if m, err = inner.AppendFrame(nil, m); err != nil {
					continue
				}
			}
			stream, err = cfg.AppendFrame(stream, m)
			if err != nil {
				if !errors.Is(err, framing.ErrTooLarge) {
					t.Fatalf("AppendFrame(%q): %v", m, err)
				}
				size := uint64(len(m))
				if !cfg.DeliverHeader && cfg.LengthIncludesHeader {
					size += uint64(header)
				}
				if len(m) <= maxMsg && size < 1<<(8*cfg.LengthSize) {
					t.Fatalf("AppendFrame refused %q, which fits: %v", m, err)
				}
				continue
			}
			sent = append(sent, m)
		}
		d.Reset()
		got, err = decodeFuzz(t, d, stream, ch, maxMsg, maxFrame)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		sameMessages(t, "round trip", got, sent)
		if d.Buffered() != 0 {
			t.Fatalf("round trip left %d bytes", d.Buffered())
		}
	})
}

func FuzzRawDecoder(f *testing.F) {
	f.Add(uint16(0), uint64(1), []byte("anything \x00 at all\n"))
	f.Add(uint16(3), uint64(2), []byte("abcdefghij"))
	f.Fuzz(func(t *testing.T, maxSel uint16, seed uint64, data []byte) {
		cfg := framing.Config{Kind: "raw", MaxMessage: int(maxSel) % 100}
		maxMsg := cfg.WithDefaults().MaxMessage
		d, err := framing.NewDecoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeFuzz(t, d, data, newChunker(seed), maxMsg, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range got {
			if len(m) == 0 {
				t.Fatal("empty raw message")
			}
		}
		if joined := bytes.Join(got, nil); !bytes.Equal(joined, data) {
			t.Fatalf("raw messages join to %q, fed %q", joined, data)
		}
	})
}
