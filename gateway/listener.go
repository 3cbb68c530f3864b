package gateway

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gatework/gatework/codec"
	"github.com/gatework/gatework/internal/framing"
)

// engine is a listener's socket engine. It is the seam where the WebSocket
// TCP or UDP implementation can be swapped.
type engine interface {
	// start listens and serves until stop; it returns the bound address.
	start() (net.Addr, error)
	// stopAccepting closes the listening socket; open connections stay.
	stopAccepting()
	// stop closes everything and releases the engine.
	stop()
}

// listener is one configured client listener.
type listener struct {
	s    *Server
	cfg  ListenerConfig
	eng  engine
	addr net.Addr
	ping []byte // the frame a quiet connection is pinged with; nil: none
	// codec is the listener's codec (codec.go); nil: raw.
	codec codec.Codec

	// For Stats: connections registered since Start and open now.
	accepted atomic.Uint64
	open     atomic.Int64
}

func newListener(s *Server, cfg ListenerConfig) *listener {
	l := &listener{s: s, cfg: cfg, codec: listenerCodec(&s.cfg, cfg)}
	l.ping = l.pingFrame()
	switch cfg.Protocol {
	case "ws":
		l.eng = newWSEngine(l)
	case "tcp":
		l.eng = newTCPEngine(l)
	case "udp":
		l.eng = newUDPEngine(l)
	}
	return l
}

func (l *listener) start() error {
	addr, err := l.eng.start()
	if err != nil {
		return err
	}
	l.addr = addr
	return nil
}

func (l *listener) stopAccepting() { l.eng.stopAccepting() }
func (l *listener) stop()          { l.eng.stop() }

// frame encodes msg for this listener's protocol: a WebSocket frame, a
// TCP frame per the listener's framing, or a UDP datagram record. forceBinary asks for a binary
// WebSocket frame.
func (l *listener) frame(msg []byte, forceBinary bool) ([]byte, error) {
	switch l.cfg.Protocol {
	case "tcp":
		return l.cfg.Framing.AppendFrame(nil, msg)
	case "udp":
		return l.udpFrame(msg)
	}
	return appendWSFrame(make([]byte, 0, len(msg)+10), l.opcode(msg, forceBinary), msg), nil
}

// opcode returns the WebSocket opcode of an outbound message.
func (l *listener) opcode(msg []byte, forceBinary bool) byte {
	if forceBinary || l.cfg.MessageType == "binary" || !utf8.Valid(msg) {
		return wsBinary
	}
	return wsText
}

// appendClose appends a WebSocket close frame; TCP has none.
func (l *listener) appendClose(dst []byte, code int, reason string) []byte {
	if l.cfg.Protocol != "ws" {
		return dst
	}
	if len(reason) > 123 {
		reason = reason[:123]
	}
	payload := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(payload, uint16(code))
	payload = append(payload, reason...)
	return appendWSFrame(dst, wsClose, payload)
}

// WebSocket opcodes (RFC 6455 §5.2).
const (
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPong   = 0xA
	// wsRSV1 marks a compressed message (RFC 7692), or'd into the opcode
	// of appendWSFrame.
	wsRSV1 = 0x40
)

// appendWSFrame appends one unmasked, final server frame. The gateway
// builds frames itself (instead of the engine's one-write-per-frame call)
// so that a connection's queued frames go out in a single write.
func appendWSFrame(dst []byte, opcode byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		dst = append(dst, 0x80|opcode, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|opcode, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|opcode, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// newDecoder returns the TCP framing decoder of this listener.
func (l *listener) newDecoder() (*framing.Decoder, error) {
	d, err := framing.NewDecoder(l.cfg.Framing)
	if err != nil {
		return nil, fmt.Errorf("gateway: listener %s: %w", l.cfg.Name, err)
	}
	return d, nil
}
