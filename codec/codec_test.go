package codec_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gatework/gatework/codec"
)

func TestJSONCodec(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // fmt of the decoded value; "" when decoding fails
		errPart string
	}{
		{`{"a":[1,"x",true,null]}`, "map[a:[1 x true <nil>]]", ""},
		{`12345678901234567890`, "12345678901234567890", ""}, // exact (json.Number)
		{` "s" `, "s", ""},
		{`{"a":1} {}`, "", "after top-level value"},
		{`{"a":`, "", "unexpected end"},
		{`not json`, "", "invalid character"},
		{``, "", "unexpected end"},
	} {
		var v any
		err := codec.JSONCodec{}.Decode([]byte(tc.in), &v)
		switch {
		case tc.errPart == "" && err != nil:
			t.Errorf("Decode(%q): %v", tc.in, err)
		case tc.errPart != "" && (err == nil || !strings.Contains(err.Error(), tc.errPart)):
			t.Errorf("Decode(%q) = %v, %v; want an error with %q", tc.in, v, err, tc.errPart)
		case tc.errPart == "" && fmt.Sprint(v) != tc.want:
			t.Errorf("Decode(%q) = %v, want %s", tc.in, v, tc.want)
		}
	}
	b, err := codec.JSONCodec{}.Encode(map[string]any{"b": 1, "a": "x"})
	if err != nil || string(b) != `{"a":"x","b":1}` {
		t.Errorf("Encode = %s, %v", b, err)
	}
	if _, err := (codec.JSONCodec{}).Encode(func() {}); err == nil {
		t.Error("Encode of a func: no error")
	}
}

func TestToNeutral(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
		fail bool
	}{
		{map[string]int{"a": 1}, `{"a":1}`, false},
		{json.RawMessage(`{"x": [1]}`), `{"x": [1]}`, false}, // taken as is
		{json.RawMessage(`{bad`), "", true},
		{struct{ N int }{3}, `{"N":3}`, false},
		{make(chan int), "", true},
	} {
		got, err := codec.ToNeutral(tc.v)
		if tc.fail != (err != nil) || (!tc.fail && string(got) != tc.want) {
			t.Errorf("ToNeutral(%v) = %s, %v; want %s (fail %v)", tc.v, got, err, tc.want, tc.fail)
		}
	}
}
