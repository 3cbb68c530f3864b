package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// serverFrame encodes one unmasked server frame.
func serverFrame(op ws.OpCode, p []byte) []byte {
	var b bytes.Buffer
	if err := ws.WriteFrame(&b, ws.NewFrame(op, true, p)); err != nil {
		panic(err)
	}
	return b.Bytes()
}

type gotFrame struct {
	op ws.OpCode
	p  string
}

// feedChunks feeds stream to a fresh reader chunk bytes at a time and
// returns the frames and the first error; stream is left as it was.
func feedChunks(stream []byte, chunk int) ([]gotFrame, error) {
	stream = bytes.Clone(stream) // feed unmasks in place
	var r frameReader
	var got []gotFrame
	for len(stream) > 0 {
		n := min(chunk, len(stream))
		err := r.feed(stream[:n], func(op ws.OpCode, p []byte) error {
			got = append(got, gotFrame{op, string(p)})
			return nil
		})
		if err != nil {
			return got, err
		}
		stream = stream[n:]
	}
	return got, nil
}

func TestFrameReaderSplits(t *testing.T) {
	long := bytes.Repeat([]byte("a"), 300)   // 16-bit length
	huge := bytes.Repeat([]byte("b"), 70000) // 64-bit length
	var stream []byte
	want := []gotFrame{
		{ws.OpText, "hello"}, {ws.OpPing, "p"}, {ws.OpBinary, string(long)},
		{ws.OpText, ""}, {ws.OpText, string(huge)}, {ws.OpPong, ""}, {ws.OpText, "masked"},
	}
	for _, f := range want[:6] {
		stream = append(stream, serverFrame(f.op, []byte(f.p))...)
	}
	stream = appendMasked(stream, ws.OpText, []byte("masked"))
	for _, chunk := range []int{1, 2, 3, 7, 64, 1000, len(stream)} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			got, err := feedChunks(stream, chunk)
			if err != nil {
				t.Fatalf("feed: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d frames, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("frame %d: op %v len %d, want op %v len %d", i, got[i].op, len(got[i].p), want[i].op, len(want[i].p))
				}
			}
		})
	}
}

func TestFrameReaderRefuses(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"fragment start", []byte{0x01, 0x01, 'a'}, ErrFragmented},
		{"continuation", []byte{0x80, 0x01, 'a'}, ErrFragmented},
		{"reserved bit", []byte{0xc1, 0x01, 'a'}, ErrFragmented},
		{"2^62 bytes", []byte{0x81, 127, 0x40, 0, 0, 0, 0, 0, 0, 0}, ErrFrameTooLarge},
		{"1 MiB + 1", []byte{0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 1}, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{1, len(tt.stream)} {
				if _, err := feedChunks(tt.stream, chunk); !errors.Is(err, tt.want) {
					t.Errorf("chunk %d: err %v, want %v", chunk, err, tt.want)
				}
			}
		})
	}
}

// TestFrameReaderKeepsNothingIdle: after whole frames nothing stays
// buffered, so an idle connection holds no memory.
func TestFrameReaderKeepsNothingIdle(t *testing.T) {
	var r frameReader
	f := serverFrame(ws.OpText, []byte("0123456789"))
	nop := func(ws.OpCode, []byte) error { return nil }
	if err := r.feed(f[:4], nop); err != nil || len(r.pend) != 4 {
		t.Fatalf("partial: err %v, %d pending", err, len(r.pend))
	}
	if err := r.feed(f[4:], nop); err != nil || r.pend != nil {
		t.Fatalf("rest: err %v, pending %q", err, r.pend)
	}
}

// FuzzFrameReader checks the reader against gobwas/ws reading the same
// stream: the same frames whatever the read boundaries, and an error only
// where gobwas shows a frame this client refuses.
func FuzzFrameReader(f *testing.F) {
	f.Add(serverFrame(ws.OpText, []byte("hi")), uint8(1))
	f.Add(append(serverFrame(ws.OpPing, nil), serverFrame(ws.OpBinary, make([]byte, 200))...), uint8(3))
	f.Add(appendMasked(nil, ws.OpText, []byte("masked")), uint8(5))
	f.Add([]byte{0x81, 127, 0x40, 0, 0, 0, 0, 0, 0, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		whole, errWhole := feedChunks(stream, len(stream)+1)
		split, errSplit := feedChunks(stream, int(chunk)+1)
		if fmt.Sprint(whole) != fmt.Sprint(split) || (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %d frames, %v; split by %d: %d frames, %v", len(whole), errWhole, chunk+1, len(split), errSplit)
		}
		rd := bytes.NewReader(stream)
		for i := 0; ; i++ {
			start := len(stream) - rd.Len()
			h, err := ws.ReadHeader(rd)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					if i != len(whole) || errWhole == nil {
						t.Fatalf("gobwas: frame %d malformed (%v); ours: %d frames, %v", i, err, len(whole), errWhole)
					}
					return
				}
				// A partial header at the end is no error, unless what is
				// there already shows a refused frame: complete it with
				// zeros and ask gobwas.
				if i != len(whole) {
					t.Fatalf("gobwas: stream ends in frame %d; ours: %d frames, %v", i, len(whole), errWhole)
				}
				if errWhole != nil {
					h, err := ws.ReadHeader(bytes.NewReader(append(bytes.Clone(stream[start:]), make([]byte, 14)...)))
					if err == nil && !refusedHeader(h) {
						t.Fatalf("ours refuses the partial frame %d (%+v): %v", i, h, errWhole)
					}
				}
				return
			}
			if refusedHeader(h) {
				if i != len(whole) || errWhole == nil {
					t.Fatalf("frame %d (%+v) should be refused; ours: %d frames, %v", i, h, len(whole), errWhole)
				}
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(rd, p); err != nil {
				if i != len(whole) || errWhole != nil {
					t.Fatalf("gobwas: frame %d incomplete; ours: %d frames, %v", i, len(whole), errWhole)
				}
				return
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			if i >= len(whole) || whole[i] != (gotFrame{h.OpCode, string(p)}) {
				t.Fatalf("frame %d: gobwas %v %q, ours %v", i, h.OpCode, p, whole)
			}
		}
	})
}

// refusedHeader reports a frame the load client refuses.
func refusedHeader(h ws.Header) bool {
	return !h.Fin || h.Rsv != 0 || h.OpCode == ws.OpContinuation || h.Length > maxFrame
}
