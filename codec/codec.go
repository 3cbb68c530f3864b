// Package codec is the seam where a listener turns structured values into
// messages and back (docs/api.md, "Codecs"). A gateway listener names its
// codec in its config ("raw", the default, "json", or a name the program
// that runs the gateway registered in gateway.Config.Codecs).
//
// Structured values travel on the bus in one neutral form, JSON: a
// structured send (api SendValue, a handler's SendValue, HTTP "data")
// carries the value as JSON, and the gateway encodes it with each
// listener's codec, once per codec and send, not once per recipient. A
// message received on a listener with a codec is decoded by the gateway
// and reaches workers in the neutral form too (worker Context.Decode).
package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Codec encodes structured values into message bytes and decodes them
// back. Implementations must be safe for concurrent use: a gateway calls
// them from its bus and socket goroutines at once.
type Codec interface {
	// Encode returns the message for v. v is what encoding/json decodes
	// the neutral form into (map[string]any, []any, string, float64 or
	// json.Number, bool, nil). The returned slice is the gateway's.
	Encode(v any) ([]byte, error)
	// Decode decodes one message into v (a pointer; the gateway passes
	// *any). It must not keep data, which the caller reuses.
	Decode(data []byte, v any) error
}

// The codec names every gateway knows.
const (
	// Raw is no codec: messages are bytes as sent, and a structured send
	// delivers the value's JSON text.
	Raw = "raw"
	// JSON is the JSON codec: messages are JSON texts; a message that is
	// not one fails to decode.
	JSON = "json"
)

// JSONCodec is the json codec: encoding/json with numbers kept exact
// (json.Number).
type JSONCodec struct{}

var _ Codec = JSONCodec{}

// Encode returns v as JSON.
func (JSONCodec) Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: json: %w", err)
	}
	return b, nil
}

// Decode decodes one JSON text into v, numbers as json.Number when v
// holds an interface; anything but one JSON text (trailing data
// included) is an error that says where.
func (JSONCodec) Decode(data []byte, v any) error {
	var raw json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("codec: json: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("codec: json: %w", err)
	}
	return nil
}

// ToNeutral returns v in the neutral form (JSON). A value that is
// already JSON ([]byte holding valid JSON or json.RawMessage) is taken as
// is.
func ToNeutral(v any) ([]byte, error) {
	switch x := v.(type) {
	case json.RawMessage:
		if !json.Valid(x) {
			return nil, fmt.Errorf("codec: raw JSON value is not valid JSON")
		}
		return bytes.Clone(x), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: value does not encode to JSON: %w", err)
	}
	return b, nil
}
