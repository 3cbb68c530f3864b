package framing

import "fmt"

// AppendFrame appends msg, framed for the peer, to dst and returns the
// extended slice (dst may be nil; msg is only read, and not retained):
//
//   - line: msg followed by the delimiter. msg must not contain the
//     delimiter, nor end with bytes that would form one together with the
//     start of the delimiter (possible with a self-overlapping delimiter
//     such as "aa"), since the peer would cut the message there: error
//     [ErrDelimiterInMessage]. Longer than MaxMessage: [ErrTooLarge].
//   - length without DeliverHeader: a header (length field set, every other
//     header byte zero) followed by msg. A msg longer than MaxMessage or
//     whose length does not fit the length field: [ErrTooLarge].
//   - length with DeliverHeader: msg as is, which must be one complete
//     frame whose length field matches its size: [ErrInvalidFrame]
//     otherwise, [ErrTooLarge] beyond MaxMessage.
//   - raw: msg as is, whatever its size.
//
// Nothing is trimmed or translated: NUL, spaces, CR, LF and trailing
// whitespace pass untouched. On error dst is returned unchanged, with the
// error wrapping the sentinel named above or, for an invalid c, a
// *[ConfigError]. AppendFrame validates c on every call (a few
// nanoseconds, no allocation); it allocates only if dst lacks room.
func (c Config) AppendFrame(dst, msg []byte) ([]byte, error) {
	s, err := compile(&c)
	if err != nil {
		return dst, err
	}
	return s.appendFrame(dst, msg)
}

func (s *spec) appendFrame(dst, msg []byte) ([]byte, error) {
	switch s.kind {
	case kindRaw:
		return append(dst, msg...), nil
	case kindLength:
		if s.flags&flagDeliver != 0 {
			return s.appendWholeFrame(dst, msg)
		}
		return s.appendLengthFrame(dst, msg)
	default:
		return s.appendLine(dst, msg)
	}
}

func (s *spec) appendLine(dst, msg []byte) ([]byte, error) {
	delim := s.delimiter()
	if len(msg) > s.maxMessage() {
		return dst, fmt.Errorf("%w: %d-byte line, max_message is %d", ErrTooLarge, len(msg), s.maxMessage())
	}
	if i := index(msg, delim); i >= 0 {
		return dst, fmt.Errorf("%w at byte %d", ErrDelimiterInMessage, i)
	}
	if k := overlapDelimiter(msg, delim); k > 0 {
		return dst, fmt.Errorf("%w: its last %d bytes and the delimiter would form a delimiter", ErrDelimiterInMessage, k)
	}
	dst = append(dst, msg...)
	return append(dst, delim...), nil
}

// overlapDelimiter returns k > 0 if msg+delim holds delim starting k bytes
// before the end of msg, that is if msg ends with delim[:k] and delim[k:]
// starts with delim[:len(delim)-k]; 0 if the first delimiter in msg+delim
// is the appended one (given that msg itself holds none).
func overlapDelimiter(msg []byte, delim string) int {
	for k := min(len(msg), len(delim)-1); k > 0; k-- {
		if string(msg[len(msg)-k:]) == delim[:k] && delim[k:] == delim[:len(delim)-k] {
			return k
		}
	}
	return 0
}

func (s *spec) appendLengthFrame(dst, msg []byte) ([]byte, error) {
	if len(msg) > s.maxMessage() {
		return dst, fmt.Errorf("%w: %d-byte message, max_message is %d", ErrTooLarge, len(msg), s.maxMessage())
	}
	v := uint64(len(msg))
	if s.flags&flagIncludes != 0 {
		v += uint64(s.header)
	}
	if v > fieldMax(int(s.lenSize)) {
		return dst, fmt.Errorf("%w: length %d does not fit a %d-byte length field", ErrTooLarge, v, s.lenSize)
	}
	n := len(dst)
	dst = append(dst, make([]byte, s.header)...)
	s.putLengthField(dst[n:], v)
	return append(dst, msg...), nil
}

func (s *spec) appendWholeFrame(dst, msg []byte) ([]byte, error) {
	if len(msg) > s.maxMessage() {
		return dst, fmt.Errorf("%w: %d-byte frame, max_message is %d", ErrTooLarge, len(msg), s.maxMessage())
	}
	if len(msg) < int(s.header) {
		return dst, fmt.Errorf("%w: %d-byte message is shorter than the %d-byte header", ErrInvalidFrame, len(msg), s.header)
	}
	n, err := s.frameSize(msg)
	if err != nil {
		return dst, err
	}
	if n != len(msg) {
		return dst, fmt.Errorf("%w: length field announces a %d-byte frame, message is %d bytes", ErrInvalidFrame, n, len(msg))
	}
	return append(dst, msg...), nil
}
