package framing

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"
)

const (
	kindLine uint8 = iota // the zero value, so that a zero Decoder decodes lines
	kindLength
	kindRaw
)

const (
	flagLittle   uint8 = 1 << iota // length field is little-endian
	flagIncludes                   // length field counts the header
	flagDeliver                    // messages are whole frames
)

// spec is a validated Config with its defaults applied, packed small
// because every Decoder carries one.
type spec struct {
	delim   string // kindLine; "" means "\n"
	max     int    // MaxMessage; 0 means DefaultMaxMessage
	header  uint16 // kindLength: HeaderSize
	offset  uint16 // kindLength: LengthOffset
	kind    uint8
	lenSize uint8 // kindLength: 1, 2 or 4
	flags   uint8
}

// compile validates c and packs it with its defaults applied (the
// defaults of WithDefaults, without copying c).
func compile(c *Config) (spec, error) {
	if err := c.validate(); err != nil {
		return spec{}, err
	}
	s := spec{max: c.MaxMessage, delim: c.Delimiter}
	if s.max == 0 {
		s.max = DefaultMaxMessage
	}
	switch c.Kind {
	case "", KindLine:
		s.kind = kindLine
		if s.delim == "" {
			s.delim = "\n"
		}
	case KindRaw:
		s.kind = kindRaw
	case KindLength:
		s.kind = kindLength
		size := c.LengthSize
		if size == 0 {
			size = 4
		}
		header := c.HeaderSize
		if header == 0 {
			header = c.LengthOffset + size
		}
		s.lenSize = uint8(size)
		s.offset = uint16(c.LengthOffset)
		s.header = uint16(header)
		if c.ByteOrder == ByteOrderLittle {
			s.flags |= flagLittle
		}
		if c.LengthIncludesHeader {
			s.flags |= flagIncludes
		}
		if c.DeliverHeader {
			s.flags |= flagDeliver
		}
	}
	return s, nil
}

func (s *spec) maxMessage() int {
	if s.max == 0 {
		return DefaultMaxMessage
	}
	return s.max
}

func (s *spec) delimiter() string {
	if s.delim == "" {
		return "\n"
	}
	return s.delim
}

// lengthField reads the length field of header h (len(h) >= s.header).
func (s *spec) lengthField(h []byte) uint64 {
	f := h[s.offset:]
	switch s.lenSize {
	case 1:
		return uint64(f[0])
	case 2:
		if s.flags&flagLittle != 0 {
			return uint64(binary.LittleEndian.Uint16(f))
		}
		return uint64(binary.BigEndian.Uint16(f))
	default:
		if s.flags&flagLittle != 0 {
			return uint64(binary.LittleEndian.Uint32(f))
		}
		return uint64(binary.BigEndian.Uint32(f))
	}
}

// putLengthField writes v (which fits) into the length field of header h.
func (s *spec) putLengthField(h []byte, v uint64) {
	f := h[s.offset:]
	switch s.lenSize {
	case 1:
		f[0] = byte(v)
	case 2:
		if s.flags&flagLittle != 0 {
			binary.LittleEndian.PutUint16(f, uint16(v))
		} else {
			binary.BigEndian.PutUint16(f, uint16(v))
		}
	default:
		if s.flags&flagLittle != 0 {
			binary.LittleEndian.PutUint32(f, uint32(v))
		} else {
			binary.BigEndian.PutUint32(f, uint32(v))
		}
	}
}

// frameSize returns the size of the whole frame whose header is h
// (len(h) >= s.header), or an error if the frame cannot be accepted: its
// message would exceed MaxMessage, or its length field is smaller than the
// header it includes. It is decided from the header alone, before anything
// of the body is buffered.
func (s *spec) frameSize(h []byte) (int, error) {
	v := s.lengthField(h)
	header := uint64(s.header)
	frame := header + v
	if s.flags&flagIncludes != 0 {
		if v < header {
			return 0, fmt.Errorf("%w: length field %d is smaller than the %d-byte header it includes", ErrInvalidFrame, v, header)
		}
		frame = v
	}
	msg := frame
	if s.flags&flagDeliver == 0 {
		msg -= header
	}
	if msg > uint64(s.maxMessage()) {
		return 0, fmt.Errorf("%w: length field announces a %d-byte message, max_message is %d", ErrTooLarge, msg, s.maxMessage())
	}
	return int(frame), nil
}

// message returns the part of a complete frame delivered to the caller.
func (s *spec) message(frame []byte) []byte {
	if s.flags&flagDeliver != 0 {
		return frame
	}
	return frame[s.header:]
}

// A Decoder cuts a byte stream into messages as configured. It is 72 bytes
// on 64-bit platforms and holds no other memory while no message is
// partially received: complete messages are delivered straight from the
// bytes fed, and only the incomplete tail of a message is copied into a
// buffer the Decoder owns, which it recycles as soon as the message is
// delivered.
//
// The zero Decoder decodes with the zero Config (lines ending in "\n", at
// most 1 MiB). A Decoder is not safe for concurrent use. A Decoder that has
// never been fed (or was just Reset) may be copied by value: making one
// with NewDecoder per listener and copying it into every connection costs
// no allocation and no validation.
type Decoder struct {
	pending []byte // start of an incomplete message; nil when none
	err     error  // sticky: set by the first error, returned ever after
	spec
}

// NewDecoder returns a Decoder for cfg after validating it (errors are
// *[ConfigError]).
func NewDecoder(cfg Config) (*Decoder, error) {
	s, err := compile(&cfg)
	if err != nil {
		return nil, err
	}
	return &Decoder{spec: s}, nil
}

// Feed consumes data, the next bytes of the stream in whatever chunks they
// arrived (one byte at a time works), and calls emit for every message it
// completes, in order, before returning. Empty messages (two delimiters in
// a row, a zero-length body) are delivered too. Feed keeps no reference to
// data after it returns.
//
// msg may alias data or the Decoder's own buffer and is valid only during
// the call to emit: copy it to keep it. emit must not call the Decoder.
//
// Feed returns an error wrapping [ErrTooLarge] as soon as the bytes fed
// prove that a message exceeds MaxMessage (a length field claiming 4 GiB is
// rejected when its header is complete; a line without delimiter when it is
// longer than MaxMessage), one wrapping [ErrInvalidFrame] for a length
// field smaller than the header it includes, and emit's error, unchanged,
// if emit fails (Feed stops at once). After an error the Decoder is dead:
// it has released its buffer and every later Feed returns the same error
// until Reset.
func (d *Decoder) Feed(data []byte, emit func(msg []byte) error) error {
	if d.err != nil {
		return d.err
	}
	if len(data) == 0 {
		return nil
	}
	var err error
	switch d.kind {
	case kindLength:
		err = d.feedLength(data, emit)
	case kindRaw:
		err = d.feedRaw(data, emit)
	default:
		err = d.feedLine(data, emit)
	}
	if err != nil {
		d.release()
		d.err = err
	}
	return err
}

// Reset discards any partial message and error, releasing the buffer: the
// Decoder is as new, with the same Config.
func (d *Decoder) Reset() {
	d.release()
	d.err = nil
}

// Buffered returns the number of bytes of an incomplete message the
// Decoder holds (0 when idle), which is about the memory it holds beyond
// its own size.
func (d *Decoder) Buffered() int { return len(d.pending) }

// Err returns the error that killed the Decoder, or nil.
func (d *Decoder) Err() error { return d.err }

func (d *Decoder) feedRaw(data []byte, emit func([]byte) error) error {
	limit := d.maxMessage()
	for len(data) > 0 {
		n := min(len(data), limit)
		if err := emit(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func (d *Decoder) feedLength(data []byte, emit func([]byte) error) error {
	if d.pending != nil {
		rest, err := d.finishFrame(data, emit)
		if err != nil || d.pending != nil {
			return err
		}
		data = rest
	}
	header := int(d.header)
	for len(data) > 0 {
		if len(data) < header {
			d.appendPending(data, header)
			return nil
		}
		n, err := d.frameSize(data)
		if err != nil {
			return err
		}
		if len(data) < n {
			d.appendPending(data, n)
			return nil
		}
		if err := emit(d.message(data[:n])); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// finishFrame completes the pending frame from data. If data is not
// enough, all of it is buffered and d.pending stays set; otherwise the
// frame is delivered, the buffer released, and the rest of data returned.
func (d *Decoder) finishFrame(data []byte, emit func([]byte) error) ([]byte, error) {
	header := int(d.header)
	if len(d.pending) < header {
		k := min(header-len(d.pending), len(data))
		d.appendPending(data[:k], header)
		data = data[k:]
		if len(d.pending) < header {
			return nil, nil
		}
	}
	n, err := d.frameSize(d.pending)
	if err != nil {
		return nil, err
	}
	k := min(n-len(d.pending), len(data))
	d.appendPending(data[:k], n)
	data = data[k:]
	if len(d.pending) < n {
		return nil, nil
	}
	err = emit(d.message(d.pending))
	d.release()
	return data, err
}

func (d *Decoder) feedLine(data []byte, emit func([]byte) error) error {
	delim := d.delimiter()
	limit := d.maxMessage()
	if d.pending != nil {
		rest, err := d.finishLine(data, delim, limit, emit)
		if err != nil || d.pending != nil {
			return err
		}
		data = rest
	}
	// A message is at most limit bytes, so its delimiter ends within
	// limit+len(delim) bytes: never search further.
	window := limit + len(delim)
	for len(data) > 0 {
		w := data
		if len(w) > window {
			w = w[:window]
		}
		if i := index(w, delim); i >= 0 {
			if err := emit(data[:i]); err != nil {
				return err
			}
			data = data[i+len(delim):]
			continue
		}
		if len(data) >= window || len(data)-partialDelimiter(data, delim, limit) > limit {
			return errLineTooLarge(limit)
		}
		d.appendPending(data, window-1)
		return nil
	}
	return nil
}

// finishLine completes the pending line from data, like finishFrame.
// Invariant on entry: d.pending holds no delimiter and at most
// limit+len(delim)-1 bytes, of which at most limit are known to belong to
// the message.
func (d *Decoder) finishLine(data []byte, delim string, limit int, emit func([]byte) error) ([]byte, error) {
	p := d.pending
	dl := len(delim)
	// A delimiter starting in p and ending in data comes first.
	for start := max(0, len(p)-dl+1); start < len(p); start++ {
		k := len(p) - start
		if len(data) >= dl-k && string(p[start:]) == delim[:k] && string(data[:dl-k]) == delim[k:] {
			if start > limit {
				return nil, errLineTooLarge(limit)
			}
			err := emit(p[:start])
			d.release()
			return data[dl-k:], err
		}
	}
	// Otherwise a delimiter wholly in data, ending within room bytes.
	room := limit - len(p) + dl // >= 1 by the invariant
	w := data
	if len(w) > room {
		w = w[:room]
	}
	if i := index(w, delim); i >= 0 {
		d.appendPending(data[:i], limit)
		err := emit(d.pending)
		d.release()
		return data[i+dl:], err
	}
	if len(data) >= room {
		return nil, errLineTooLarge(limit)
	}
	d.appendPending(data, limit+dl-1)
	if len(d.pending)-partialDelimiter(d.pending, delim, limit) > limit {
		return nil, errLineTooLarge(limit)
	}
	return nil, nil
}

func errLineTooLarge(limit int) error {
	return fmt.Errorf("%w: no delimiter within max_message %d bytes", ErrTooLarge, limit)
}

// index is bytes.Index for a string separator, without allocating: the
// separator's bytes are viewed in place (bytes.Index only reads them);
// []byte(sep) would copy separators longer than 32 bytes to the heap.
func index(b []byte, sep string) int {
	if len(sep) == 1 {
		return bytes.IndexByte(b, sep[0])
	}
	return bytes.Index(b, unsafe.Slice(unsafe.StringData(sep), len(sep)))
}

// partialDelimiter returns how many bytes at the end of b could be the
// start of delim (the longest suffix of b that is a proper prefix of delim).
// Those bytes may yet turn out not to belong to the message. It returns 0
// at once when len(b) <= limit, when the answer does not matter.
func partialDelimiter(b []byte, delim string, limit int) int {
	if len(b) <= limit {
		return 0
	}
	for k := min(len(b), len(delim)-1); k > 0; k-- {
		if string(b[len(b)-k:]) == delim[:k] {
			return k
		}
	}
	return 0
}

// appendPending appends b to the pending buffer, growing it (by doubling,
// to no more than limit bytes, the most it can need) from the pool.
func (d *Decoder) appendPending(b []byte, limit int) {
	need := len(d.pending) + len(b)
	if need > cap(d.pending) {
		nb := getBuf(min(max(need, 2*cap(d.pending)), max(limit, need)))
		nb = append(nb, d.pending...)
		putBuf(d.pending)
		d.pending = nb
	}
	d.pending = append(d.pending, b...)
}

// release returns the pending buffer to the pool.
func (d *Decoder) release() {
	if d.pending != nil {
		putBuf(d.pending)
		d.pending = nil
	}
}

// Buffers for partial messages come in three pooled sizes; larger ones are
// allocated to measure and left to the garbage collector. The pools hold
// array pointers so that Get and Put do not allocate.
var (
	pool512 sync.Pool // *[512]byte
	pool4k  sync.Pool // *[4096]byte
	pool32k sync.Pool // *[32768]byte
)

// getBuf returns an empty buffer with room for at least n bytes.
func getBuf(n int) []byte {
	switch {
	case n <= 512:
		if p, ok := pool512.Get().(*[512]byte); ok {
			return p[:0]
		}
		return make([]byte, 0, 512)
	case n <= 4096:
		if p, ok := pool4k.Get().(*[4096]byte); ok {
			return p[:0]
		}
		return make([]byte, 0, 4096)
	case n <= 32768:
		if p, ok := pool32k.Get().(*[32768]byte); ok {
			return p[:0]
		}
		return make([]byte, 0, 32768)
	default:
		return make([]byte, 0, n)
	}
}

// putBuf recycles b, which must come from getBuf and no longer be used.
func putBuf(b []byte) {
	switch cap(b) {
	case 512:
		pool512.Put((*[512]byte)(b[:512]))
	case 4096:
		pool4k.Put((*[4096]byte)(b[:4096]))
	case 32768:
		pool32k.Put((*[32768]byte)(b[:32768]))
	}
}
