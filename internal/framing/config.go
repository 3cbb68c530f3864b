package framing

import (
	"errors"
	"fmt"
	"strconv"
)

// Kinds of framing, the values of [Config.Kind].
const (
	// KindLine: each message ends with [Config.Delimiter].
	KindLine = "line"
	// KindLength: each message is preceded by a header holding its length.
	KindLength = "length"
	// KindRaw: each chunk read from the socket is a message.
	KindRaw = "raw"
)

// Byte orders of the length field, the values of [Config.ByteOrder].
const (
	ByteOrderBig    = "big"
	ByteOrderLittle = "little"
)

// Limits and defaults of a Config.
const (
	// DefaultMaxMessage is the MaxMessage used when it is 0: 1 MiB.
	DefaultMaxMessage = 1 << 20
	// MaxMaxMessage is the largest MaxMessage accepted: 1 GiB.
	MaxMaxMessage = 1 << 30
	// MaxDelimiter is the longest delimiter accepted, in bytes.
	MaxDelimiter = 64
	// MaxHeaderSize is the largest HeaderSize accepted, in bytes.
	MaxHeaderSize = 1<<16 - 1
)

// Errors returned by Feed and AppendFrame, wrapped with details; test them
// with errors.Is.
var (
	// ErrTooLarge: a message exceeds MaxMessage or its length field.
	ErrTooLarge = errors.New("framing: message too large")
	// ErrDelimiterInMessage: an outbound line contains the delimiter (or
	// ends with the start of a self-overlapping one), so the peer would cut
	// it in two.
	ErrDelimiterInMessage = errors.New("framing: message contains the delimiter")
	// ErrInvalidFrame: a length field that cannot be right (smaller than the
	// header it is said to include), or, with DeliverHeader, an outbound
	// message that is not one complete frame.
	ErrInvalidFrame = errors.New("framing: invalid frame")
)

// ConfigError reports an invalid [Config] field. Key is the field's YAML
// key (such as "length_size"), so callers can point at the faulty line of a
// configuration file.
type ConfigError struct {
	Key    string
	Reason string
}

// Error returns "framing: <key>: <reason>".
func (e *ConfigError) Error() string { return "framing: " + e.Key + ": " + e.Reason }

func configErr(key, format string, args ...any) error {
	return &ConfigError{Key: key, Reason: fmt.Sprintf(format, args...)}
}

// Config is the framing of one TCP listener. The zero value is valid: lines
// ending in "\n", at most 1 MiB each. Fields that do not belong to Kind must
// be left zero (Validate rejects them, so that a misplaced option is not
// silently ignored). Config is a plain value, safe to copy and to use from
// any number of goroutines.
type Config struct {
	// Kind is "line", "length" or "raw"; empty means "line".
	Kind string `yaml:"kind" json:"kind,omitempty"`

	// Delimiter ends every message of kind line. It may be several bytes
	// ("\r\n"), at most MaxDelimiter; escape sequences are the caller's
	// business (the bytes here are used as they are). Empty means "\n".
	Delimiter string `yaml:"delimiter" json:"delimiter,omitempty"`

	// LengthSize is the size in bytes of the length field of kind length:
	// 1, 2 or 4; 0 means 4. The field is an unsigned integer.
	LengthSize int `yaml:"length_size" json:"length_size,omitempty"`
	// ByteOrder of the length field: "big" or "little"; empty means "big".
	ByteOrder string `yaml:"byte_order" json:"byte_order,omitempty"`
	// LengthOffset is the position of the length field within the header,
	// in bytes; 0 means the header starts with it.
	LengthOffset int `yaml:"length_offset" json:"length_offset,omitempty"`
	// HeaderSize is the number of bytes before the body, at least
	// LengthOffset+LengthSize and at most MaxHeaderSize; 0 means
	// LengthOffset+LengthSize.
	HeaderSize int `yaml:"header_size" json:"header_size,omitempty"`
	// LengthIncludesHeader: the length field counts the whole frame,
	// header included; false means it counts the body only.
	LengthIncludesHeader bool `yaml:"length_includes_header" json:"length_includes_header,omitempty"`
	// DeliverHeader: messages are whole frames, header included, both ways:
	// the decoder delivers whole frames, and outbound messages must be
	// complete frames whose length field matches (AppendFrame checks it and
	// adds nothing). False means messages are bodies: the decoder strips the
	// header, and AppendFrame builds one (length field set, other header
	// bytes zero).
	DeliverHeader bool `yaml:"deliver_header" json:"deliver_header,omitempty"`

	// MaxMessage is the largest message, in bytes, excluding the delimiter
	// for kind line, the body (or the whole frame with DeliverHeader) for
	// kind length, and a read chunk for kind raw (larger chunks are cut into
	// pieces of MaxMessage). At most MaxMaxMessage; 0 means
	// DefaultMaxMessage (1 MiB).
	MaxMessage int `yaml:"max_message" json:"max_message,omitempty"`
}

// WithDefaults returns c with every zero field that belongs to its kind set
// to its default: kind "line", delimiter "\n", length_size 4, byte_order
// "big", header_size length_offset+length_size, max_message 1 MiB. Fields
// of other kinds are left alone (so Validate still reports them). It does
// not validate.
func (c Config) WithDefaults() Config {
	if c.Kind == "" {
		c.Kind = KindLine
	}
	switch c.Kind {
	case KindLine:
		if c.Delimiter == "" {
			c.Delimiter = "\n"
		}
	case KindLength:
		if c.LengthSize == 0 {
			c.LengthSize = 4
		}
		if c.ByteOrder == "" {
			c.ByteOrder = ByteOrderBig
		}
		if c.HeaderSize == 0 {
			c.HeaderSize = c.LengthOffset + c.LengthSize
		}
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	return c
}

// Validate reports the first invalid field of c as a *[ConfigError] naming
// its YAML key, such as "framing: length_size: must be 1, 2 or 4, got 3".
// It changes nothing and accepts zero fields wherever zero has a documented
// meaning, so c.Validate() and c.WithDefaults().Validate() agree.
func (c Config) Validate() error { return c.validate() }

// validate is Validate without copying c.
func (c *Config) validate() error {
	if c.MaxMessage < 0 || c.MaxMessage > MaxMaxMessage {
		return configErr("max_message", "must be between 0 and %d, got %d", MaxMaxMessage, c.MaxMessage)
	}
	switch c.Kind {
	case "", KindLine:
		if err := c.onlyLine(); err != nil {
			return err
		}
		if len(c.Delimiter) > MaxDelimiter {
			return configErr("delimiter", "must be at most %d bytes, got %d", MaxDelimiter, len(c.Delimiter))
		}
		return nil
	case KindLength:
		if c.Delimiter != "" {
			return configErr("delimiter", "only valid with kind line, kind is %q", c.Kind)
		}
		return c.validateLength()
	case KindRaw:
		if c.Delimiter != "" {
			return configErr("delimiter", "only valid with kind line, kind is %q", c.Kind)
		}
		return c.onlyLine()
	default:
		return configErr("kind", "must be line, length or raw, got %q", c.Kind)
	}
}

// onlyLine rejects the options of kind length.
func (c *Config) onlyLine() error {
	var key string
	switch {
	case c.LengthSize != 0:
		key = "length_size"
	case c.ByteOrder != "":
		key = "byte_order"
	case c.LengthOffset != 0:
		key = "length_offset"
	case c.HeaderSize != 0:
		key = "header_size"
	case c.LengthIncludesHeader:
		key = "length_includes_header"
	case c.DeliverHeader:
		key = "deliver_header"
	default:
		return nil
	}
	kind := c.Kind
	if kind == "" {
		kind = KindLine
	}
	return configErr(key, "only valid with kind length, kind is %q", kind)
}

func (c *Config) validateLength() error {
	size := c.LengthSize
	switch size {
	case 0:
		size = 4
	case 1, 2, 4:
	default:
		return configErr("length_size", "must be 1, 2 or 4, got %d", c.LengthSize)
	}
	switch c.ByteOrder {
	case "", ByteOrderBig, ByteOrderLittle:
	default:
		return configErr("byte_order", "must be big or little, got %q", c.ByteOrder)
	}
	if c.LengthOffset < 0 || c.LengthOffset > MaxHeaderSize-size {
		return configErr("length_offset", "must be between 0 and %d, got %d", MaxHeaderSize-size, c.LengthOffset)
	}
	header := c.HeaderSize
	switch {
	case header < 0:
		return configErr("header_size", "must not be negative, got %d", header)
	case header == 0:
		header = c.LengthOffset + size
	case header < c.LengthOffset+size:
		return configErr("header_size", "must be at least length_offset+length_size = %d, got %d", c.LengthOffset+size, header)
	case header > MaxHeaderSize:
		return configErr("header_size", "must be at most %d, got %d", MaxHeaderSize, header)
	}
	if c.LengthIncludesHeader && uint64(header) > fieldMax(size) {
		return configErr("header_size", "%d does not fit the %d-byte length field that includes it", header, size)
	}
	maxMsg := c.MaxMessage
	if maxMsg == 0 {
		maxMsg = DefaultMaxMessage
	}
	if c.DeliverHeader && header > maxMsg {
		return configErr("header_size", "%d exceeds max_message %d, which counts the header with deliver_header", header, maxMsg)
	}
	return nil
}

// fieldMax is the largest value of a length field of size bytes.
func fieldMax(size int) uint64 { return 1<<(8*uint(size)) - 1 }

// String describes c briefly, for logs: "line \"\\n\" max 1048576",
// "length 4 big offset 0 header 4 max 1048576", "raw max 1048576".
func (c Config) String() string {
	c = c.WithDefaults()
	switch c.Kind {
	case KindLine:
		return "line " + strconv.Quote(c.Delimiter) + " max " + strconv.Itoa(c.MaxMessage)
	case KindLength:
		s := fmt.Sprintf("length %d %s offset %d header %d", c.LengthSize, c.ByteOrder, c.LengthOffset, c.HeaderSize)
		if c.LengthIncludesHeader {
			s += " includes-header"
		}
		if c.DeliverHeader {
			s += " deliver-header"
		}
		return s + " max " + strconv.Itoa(c.MaxMessage)
	default:
		return c.Kind + " max " + strconv.Itoa(c.MaxMessage)
	}
}
