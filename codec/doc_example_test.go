package codec_test

import (
	"fmt"

	"github.com/gatework/gatework/codec"
)

// A structured value travels on the bus as JSON; a json listener sends
// that text, and a codec of its own gets the value JSON decodes to.
func ExampleToNeutral() {
	b, _ := codec.ToNeutral(map[string]any{"op": "move", "x": 3})
	var v any
	_ = codec.JSONCodec{}.Decode(b, &v)
	fmt.Println(string(b), v)
	// Output: {"op":"move","x":3} map[op:move x:3]
}
