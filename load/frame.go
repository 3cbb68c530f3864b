package load

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gobwas/ws"
)

// maxFrame bounds the payload of one frame the load client accepts: every
// workload's messages are small, so anything bigger is a broken stream.
const maxFrame = 1 << 20

// Errors of the load client's frame reader.
var (
	// ErrFrameTooLarge reports a frame whose payload exceeds maxFrame.
	ErrFrameTooLarge = errors.New("load: frame larger than 1 MiB")
	// ErrFragmented reports a fragmented message or reserved bits: gatework
	// and the bare server send every message as one plain frame.
	ErrFragmented = errors.New("load: fragmented frame or reserved bits set")
)

// frameReader splits the byte stream of one client connection into
// WebSocket frames, whatever the read boundaries. It keeps only the partial
// frame at the end of a read (usually nothing), so an idle connection holds
// no buffer. It is used by one goroutine at a time.
type frameReader struct {
	pend []byte
}

// feed parses the frames in the stream so far (the partial frame kept from
// earlier, then data) and calls fn with each complete one, unmasked. The
// payload is valid only during fn; fn's error stops the parse and is
// returned. A masked payload is unmasked in place, in data; data is not
// retained.
func (r *frameReader) feed(data []byte, fn func(op ws.OpCode, payload []byte) error) error {
	buf := data
	if len(r.pend) > 0 {
		r.pend = append(r.pend, data...)
		buf = r.pend
	}
	for {
		n, err := nextFrame(buf, fn)
		if err != nil {
			r.pend = nil
			return err
		}
		if n == 0 {
			break
		}
		buf = buf[n:]
	}
	switch {
	case len(buf) == 0:
		r.pend = nil
	case len(r.pend) > 0:
		// buf is a tail of pend: move it to the front.
		r.pend = append(r.pend[:0], buf...)
	default:
		r.pend = append([]byte(nil), buf...)
	}
	return nil
}

// nextFrame parses the frame at the start of b and hands it to fn; it
// returns the frame's length, or 0 when b does not hold a whole frame yet.
func nextFrame(b []byte, fn func(op ws.OpCode, payload []byte) error) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	op := ws.OpCode(b[0] & 0x0f)
	if b[0]&0x80 == 0 || b[0]&0x70 != 0 || op == ws.OpContinuation {
		return 0, ErrFragmented
	}
	if len(b) < 2 {
		return 0, nil
	}
	masked := b[1]&0x80 != 0
	hl, length := 2, uint64(b[1]&0x7f)
	switch length {
	case 126:
		if len(b) < 4 {
			return 0, nil
		}
		hl, length = 4, uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		if len(b) < 10 {
			return 0, nil
		}
		hl, length = 10, binary.BigEndian.Uint64(b[2:])
	}
	if length > maxFrame {
		return 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, length)
	}
	var mask [4]byte
	if masked {
		if len(b) < hl+4 {
			return 0, nil
		}
		copy(mask[:], b[hl:])
		hl += 4
	}
	end := hl + int(length)
	if len(b) < end {
		return 0, nil
	}
	payload := b[hl:end]
	if masked {
		ws.Cipher(payload, mask, 0)
	}
	return end, fn(op, payload)
}

// appendMasked appends p as one masked client frame of opcode op.
func appendMasked(dst []byte, op ws.OpCode, p []byte) []byte {
	dst = append(dst, 0x80|byte(op)) // FIN
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	mask := [4]byte{0x5a, 0x17, 0xc3, 0x9e}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, p...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}
