package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/codec"
)

// This file holds the listener codecs (ListenerConfig.Codec; package
// codec): the gateway is where structured values meet bytes. Structured
// sends arrive in the neutral form (JSON) and are encoded here once per
// codec and send; inbound messages of a listener with a codec are decoded
// here, and a message that does not decode is handled by the listener's
// DecodeError policy.

// The values of ListenerConfig.DecodeError.
const (
	// DecodeErrorClose closes a client whose message does not decode:
	// reason decode_error, WebSocket close code 1007.
	DecodeErrorClose = "close"
	// DecodeErrorEvent keeps the client and delivers the message to the
	// workers as a bus.EventDecodeError (the message as received and the
	// codec's error) instead of a message event.
	DecodeErrorEvent = "event"
)

// validateCodecs checks every listener's codec and decode_error.
func (c Config) validateCodecs() error {
	for name, cd := range c.Codecs {
		if name == "" || name == codec.Raw || name == codec.JSON {
			return fmt.Errorf("gateway: codecs: %q is reserved", name)
		}
		if cd == nil {
			return fmt.Errorf("gateway: codecs: %q is nil", name)
		}
	}
	for i, l := range c.Listeners {
		switch l.Codec {
		case "", codec.Raw, codec.JSON:
		default:
			if c.Codecs[l.Codec] == nil {
				return fmt.Errorf("gateway: listeners[%d].codec: %q is not raw, json or a codec in Config.Codecs", i, l.Codec)
			}
		}
		switch l.DecodeError {
		case "", DecodeErrorClose, DecodeErrorEvent:
		default:
			return fmt.Errorf("gateway: listeners[%d].decode_error: %q is not close or event", i, l.DecodeError)
		}
		if l.DecodeError == DecodeErrorEvent && (l.Codec == "" || l.Codec == codec.Raw) {
			return fmt.Errorf("gateway: listeners[%d].decode_error: event only with a codec (raw messages are not decoded)", i)
		}
	}
	return nil
}

// listenerCodec returns the codec of a listener's config: nil for raw.
func listenerCodec(cfg *Config, l ListenerConfig) codec.Codec {
	switch l.Codec {
	case "", codec.Raw:
		return nil
	case codec.JSON:
		return codec.JSONCodec{}
	}
	return cfg.Codecs[l.Codec]
}

// codecName is the listener's codec as clients and workers see it: ""
// for raw.
func (l *listener) codecName() string {
	if l.cfg.Codec == codec.Raw {
		return ""
	}
	return l.cfg.Codec
}

// decodeInbound runs the listener's codec over an inbound message: ok
// with the neutral form of the value (nil on a json listener, where data
// is already that form), or the codec's error.
func (l *listener) decodeInbound(data []byte) (value []byte, err error) {
	if l.cfg.Codec == codec.JSON {
		if !json.Valid(data) {
			var v any
			return nil, codec.JSONCodec{}.Decode(data, &v) // the precise error
		}
		return nil, nil
	}
	var v any
	if err := l.codec.Decode(data, &v); err != nil {
		return nil, err
	}
	value, err = json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("decoded value has no JSON form: %w", err)
	}
	return value, nil
}

// decodeFailed applies the listener's decode_error policy to a message of
// c that did not decode; it returns the event to deliver, if any.
func (s *Server) decodeFailed(c *conn, data []byte, binary bool, err error, now int64) (bus.Event, bool) {
	if c.l.cfg.DecodeError == DecodeErrorEvent {
		return bus.Event{
			Type:       bus.EventDecodeError,
			Data:       append([]byte(nil), data...),
			Binary:     binary,
			Error:      truncateError(err.Error()),
			TimeUnixMs: now,
		}, true
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("message did not decode; closing", "client", c.id(s.id), "listener", c.l.cfg.Name, "err", err)
	}
	s.closeWith(c, ReasonDecodeError, ReasonDecodeError.wsCode(), "message does not decode")
	return bus.Event{}, false
}

// maxErrorText bounds the codec error carried in a decode_error event.
const maxErrorText = 512

func truncateError(s string) string {
	if len(s) > maxErrorText {
		return s[:maxErrorText]
	}
	return s
}

// valueCache encodes the value of a structured send once per codec.
type valueCache struct {
	neutral []byte
	decoded bool
	value   any
	err     error    // the neutral form did not decode
	names   []string // codec names encoded so far, with their results
	msgs    [][]byte
	errs    []error
}

// forListener returns the message of the value for l's codec: the
// neutral form itself on raw and json listeners, else the codec's
// encoding, made once per codec (a failure too).
func (vc *valueCache) forListener(l *listener) ([]byte, error) {
	if l.codec == nil || l.cfg.Codec == codec.JSON {
		return vc.neutral, nil
	}
	for i, n := range vc.names {
		if n == l.cfg.Codec {
			return vc.msgs[i], vc.errs[i]
		}
	}
	if !vc.decoded {
		vc.decoded = true
		vc.err = codec.JSONCodec{}.Decode(vc.neutral, &vc.value)
	}
	var msg []byte
	err := vc.err
	if err == nil {
		msg, err = l.codec.Encode(vc.value)
	}
	if err != nil {
		err = fmt.Errorf("listener %s: codec %s: %w", l.cfg.Name, l.cfg.Codec, err)
		msg = nil
	}
	vc.names = append(vc.names, l.cfg.Codec)
	vc.msgs = append(vc.msgs, msg)
	vc.errs = append(vc.errs, err)
	return msg, err
}
