package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
	"github.com/klauspost/compress/flate"

	"github.com/gatework/gatework/internal/framing"
)

// Compression configures permessage-deflate (RFC 7692) on a WebSocket
// listener. The gateway always answers server_no_context_takeover and
// client_no_context_takeover: every message is compressed and inflated on
// its own, so a connection holds no deflate state between messages (an
// idle one holds nothing), and a message sent to many clients with the
// same parameters is compressed once for all of them.
type Compression struct {
	// Enabled turns the extension on: a client that offers it gets it.
	// false (the default) means no compression; the other fields are then
	// ignored.
	Enabled bool `yaml:"enabled"`
	// Level is the deflate level, 1 (fastest) to 9 (smallest); 0 means
	// DefaultCompressionLevel (1).
	Level int `yaml:"level"`
	// MinSize is the shortest message compressed: shorter ones go out
	// uncompressed (deflate would grow them); 0 means DefaultMinCompress
	// (128 bytes).
	MinSize int `yaml:"min_size"`
	// ClientMaxWindowBits (8 to 15) is answered to a client whose offer
	// has client_max_window_bits, limiting the LZ77 window of its
	// messages (offers without it are accepted unchanged, as RFC 7692
	// requires); 0 means 15, the largest window.
	ClientMaxWindowBits int `yaml:"client_max_window_bits"`
}

// Compression defaults.
const (
	DefaultCompressionLevel = 1
	DefaultMinCompress      = 128
)

func (c Compression) withDefaults() Compression {
	if c.Level == 0 {
		c.Level = DefaultCompressionLevel
	}
	if c.MinSize <= 0 {
		c.MinSize = DefaultMinCompress
	}
	if c.ClientMaxWindowBits == 0 {
		c.ClientMaxWindowBits = 15
	}
	return c
}

func (c Compression) validate(key func(string) string) error {
	if c.Level < 0 || c.Level > 9 {
		return fmt.Errorf("gateway: %s: %d is not between 1 and 9 (0: default)", key("compression.level"), c.Level)
	}
	if c.MinSize < 0 {
		return fmt.Errorf("gateway: %s: negative", key("compression.min_size"))
	}
	if b := c.ClientMaxWindowBits; b != 0 && (b < 8 || b > 15) {
		return fmt.Errorf("gateway: %s: %d is not between 8 and 15 (0: 15)", key("compression.client_max_window_bits"), b)
	}
	return nil
}

// validateProtocolKeys refuses the keys that do not belong to the
// listener's protocol.
func (l ListenerConfig) validateProtocolKeys(key func(string) string) error {
	if l.ConfirmTimeout < 0 {
		return fmt.Errorf("gateway: %s: negative", key("confirm_timeout"))
	}
	if l.Protocol == "udp" {
		if l.TLS != nil {
			return fmt.Errorf("gateway: %s: not for udp listeners", key("tls"))
		}
		if l.DelayReceive {
			return fmt.Errorf("gateway: %s: not for udp listeners (a peer's datagrams share the listener's socket)", key("delay_receive"))
		}
		switch l.Framing.Kind {
		case "", framing.KindRaw, framing.KindLength:
		default:
			return fmt.Errorf("gateway: %s: %q is not raw or length on a udp listener", key("framing.kind"), l.Framing.Kind)
		}
	} else if l.MaxPeers != 0 {
		return fmt.Errorf("gateway: %s: only for udp listeners", key("max_peers"))
	}
	if l.MaxPeers < 0 {
		return fmt.Errorf("gateway: %s: negative", key("max_peers"))
	}
	if l.UpgradeTimeout < 0 {
		return fmt.Errorf("gateway: %s: negative", key("upgrade_timeout"))
	}
	if l.UpgradeMaxPending < 0 {
		return fmt.Errorf("gateway: %s: negative", key("upgrade_max_pending"))
	}
	if l.Protocol != "ws" {
		if l.Compression != (Compression{}) {
			return fmt.Errorf("gateway: %s: only for ws listeners", key("compression"))
		}
		switch {
		case l.UpgradeHook:
			return fmt.Errorf("gateway: %s: only for ws listeners", key("upgrade_hook"))
		case l.UpgradeTimeout != 0:
			return fmt.Errorf("gateway: %s: only for ws listeners", key("upgrade_timeout"))
		case l.UpgradeMaxPending != 0:
			return fmt.Errorf("gateway: %s: only for ws listeners", key("upgrade_max_pending"))
		}
		return nil
	}
	return l.Compression.validate(key)
}

// deflateTail is what a sync flush ends with and RFC 7692 §7.2.1 has the
// sender remove and the receiver add back.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// deflateOffer answers a client's permessage-deflate offers (the
// Sec-WebSocket-Extensions options, passed to negotiate in turn) for a
// listener with compression cfg: it accepts the first valid offer and
// records the window the gateway may use for its messages in serverBits.
type deflateOffer struct {
	cfg        Compression
	serverBits uint8 // 0 until an offer is accepted
}

// negotiate is a gobwas/ws Upgrader.Negotiate callback.
func (d *deflateOffer) negotiate(opt httphead.Option) (httphead.Option, error) {
	if d.serverBits != 0 || !bytes.Equal(opt.Name, wsflate.ExtensionNameBytes) {
		return httphead.Option{}, nil // another extension, or one already accepted
	}
	var offer wsflate.Parameters
	if err := offer.Parse(opt); err != nil {
		return httphead.Option{}, nil // an invalid offer is declined, not fatal
	}
	accept := wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
	bits := uint8(15)
	if offer.ServerMaxWindowBits.Defined() {
		// The client limits the window of our messages (8 works as 9 in
		// zlib: it is answered as 9 would be, which is smaller than
		// asked and never larger than allowed).
		bits = uint8(offer.ServerMaxWindowBits)
		accept.ServerMaxWindowBits = offer.ServerMaxWindowBits
	}
	if offer.ClientMaxWindowBits.Defined() && d.cfg.ClientMaxWindowBits < 15 {
		want := wsflate.WindowBits(d.cfg.ClientMaxWindowBits)
		if offer.ClientMaxWindowBits > 1 && offer.ClientMaxWindowBits < want {
			want = offer.ClientMaxWindowBits
		}
		accept.ClientMaxWindowBits = want
	}
	d.serverBits = bits
	return accept.Option(), nil
}

// compressors pools deflate writers by level and window bits: a fan-out
// compresses a message once per set of parameters and returns the writer.
var compressors sync.Map // compressorKey → *sync.Pool of *flate.Writer

type compressorKey struct{ level, bits uint8 }

// deflateMessage compresses msg as one permessage-deflate message: a raw
// deflate stream that starts afresh (no context takeover), flushed, its
// final 4 bytes removed. bits (8–15) bounds the window.
func deflateMessage(msg []byte, level int, bits uint8) ([]byte, error) {
	key := compressorKey{uint8(level), bits}
	pv, _ := compressors.Load(key)
	if pv == nil {
		pv, _ = compressors.LoadOrStore(key, &sync.Pool{})
	}
	pool := pv.(*sync.Pool)
	var buf bytes.Buffer
	buf.Grow(len(msg)/2 + 16)
	w, _ := pool.Get().(*flate.Writer)
	if w == nil {
		var err error
		if bits >= 15 {
			w, err = flate.NewWriter(&buf, level)
		} else {
			// A window of 2^bits bytes; zlib's minimum of 9 for 8.
			w, err = flate.NewWriterWindow(&buf, 1<<max(bits, 9))
		}
		if err != nil {
			return nil, fmt.Errorf("gateway: deflate writer: %w", err)
		}
	} else {
		w.Reset(&buf)
	}
	_, err := w.Write(msg)
	if err == nil {
		err = w.Flush()
	}
	w.Reset(io.Discard) // drop the reference to buf
	pool.Put(w)
	if err != nil {
		return nil, fmt.Errorf("gateway: deflate: %w", err)
	}
	out := buf.Bytes()
	if !bytes.HasSuffix(out, deflateTail) {
		return nil, errors.New("gateway: deflate: flush did not end with an empty stored block")
	}
	return out[:len(out)-len(deflateTail)], nil
}

// inflaters pools the decompressors of inbound messages: a connection
// holds none while idle, and one only while it inflates a message.
var inflaters sync.Pool // of io.ReadCloser implementing flate.Resetter

// errInflateTooLarge reports an inflated message over max_message.
var errInflateTooLarge = errors.New("gateway: inflated message too large")

// inflateMessage inflates one permessage-deflate message (its tail added
// back) into dst, refusing output over limit bytes: errInflateTooLarge, or
// another error for a malformed stream. dst's backing array is reused.
func inflateMessage(dst, compressed []byte, limit int) ([]byte, error) {
	src := &tailReader{msg: compressed}
	r, _ := inflaters.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReader(src)
	} else if err := r.(flate.Resetter).Reset(src, nil); err != nil {
		return dst, fmt.Errorf("gateway: inflate reset: %w", err)
	}
	defer func() {
		_ = r.(flate.Resetter).Reset(&tailReader{}, nil) // drop compressed
		inflaters.Put(r)
	}()
	out := dst[:0]
	for {
		if len(out) == cap(out) {
			if len(out) > limit {
				return out, errInflateTooLarge
			}
			out = append(out, 0)[:len(out)]
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			return out, errInflateTooLarge
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// The stream ends where the sync-flush tail ends: a message
			// is a sequence of blocks, normally without a final one.
			return out, nil
		default:
			return out, fmt.Errorf("gateway: inflate: %w", err)
		}
	}
}

// deflateBits returns the window bits a message of n bytes is compressed
// with for c, 0 when it goes out uncompressed.
func (c *conn) deflateBits(n int) uint8 {
	if c.deflate == 0 || n < c.l.cfg.Compression.MinSize {
		return 0
	}
	return c.deflate
}

// frame encodes msg for c: compressed when c negotiated permessage-deflate
// and msg is at least min_size bytes, else as its listener frames it; a
// binary frame when forceBinary or c opted for binary (SetBinary). Caller
// holds c.sh.mu.
func (c *conn) frame(msg []byte, forceBinary bool) ([]byte, error) {
	forceBinary = forceBinary || c.binary
	if bits := c.deflateBits(len(msg)); bits != 0 {
		return c.l.deflateFrame(msg, forceBinary, bits)
	}
	return c.l.frame(msg, forceBinary)
}

// deflateFrame returns msg as one compressed WebSocket frame (RSV1 set),
// its type chosen on the uncompressed bytes.
func (l *listener) deflateFrame(msg []byte, forceBinary bool, bits uint8) ([]byte, error) {
	z, err := deflateMessage(msg, l.cfg.Compression.Level, bits)
	if err != nil {
		return nil, err
	}
	return appendWSFrame(make([]byte, 0, len(z)+10), l.opcode(msg, forceBinary)|wsRSV1, z), nil
}

// tailReader reads a compressed message followed by deflateTail; it is a
// flate.Reader (a byte reader), so the decompressor reads it directly.
type tailReader struct {
	msg []byte
	off int // into msg, then into deflateTail
}

func (r *tailReader) next() []byte {
	if r.off < len(r.msg) {
		return r.msg[r.off:]
	}
	if i := r.off - len(r.msg); i < len(deflateTail) {
		return deflateTail[i:]
	}
	return nil
}

// Read implements io.Reader.
func (r *tailReader) Read(p []byte) (int, error) {
	rest := r.next()
	if len(rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, rest)
	r.off += n
	return n, nil
}

// ReadByte implements io.ByteReader.
func (r *tailReader) ReadByte() (byte, error) {
	rest := r.next()
	if len(rest) == 0 {
		return 0, io.EOF
	}
	r.off++
	return rest[0], nil
}
