package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// param describes one request field of a method. It is read once from the
// struct tags of the method's parameter struct, so decoding, validation,
// GET /api and the OpenAPI document all come from the same declaration:
//
//	json:"name"       the field's name in the request body (exact case)
//	doc:"…"           its description
//	required:"true"   it must be present and not null
//	default:"…"       a JSON literal set before decoding (absent or null keeps it)
//	min:"n" max:"n"   inclusive bounds of a number, checked when present
//	gt:"n"            exclusive lower bound of a number, checked when present
//	oneof:"g"         exactly one field of group g must be present
//	anyof:"g"         at least one field of group g must be present
type param struct {
	name     string
	index    []int        // reflect.Value.FieldByIndex path in the params struct
	typ      reflect.Type // as declared, maybe a pointer
	doc      string
	required bool
	def      any // decoded default, or nil
	defJSON  string
	min, max *float64
	gt       *float64
	oneOf    string
	anyOf    string
}

// paramsOf reads the params of struct type t, following embedded structs.
// It panics on a malformed declaration: the table is fixed at compile time
// and a test builds it.
func paramsOf(t reflect.Type) []param {
	var out []param
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			idx := append(slices.Clone(index), i)
			if f.Anonymous {
				walk(f.Type, idx)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				panic(fmt.Sprintf("httpapi: %s.%s has no json name", t, f.Name))
			}
			p := param{
				name:     name,
				index:    idx,
				typ:      f.Type,
				doc:      f.Tag.Get("doc"),
				required: f.Tag.Get("required") == "true",
				defJSON:  f.Tag.Get("default"),
				min:      floatTag(f, "min"),
				max:      floatTag(f, "max"),
				gt:       floatTag(f, "gt"),
				oneOf:    f.Tag.Get("oneof"),
				anyOf:    f.Tag.Get("anyof"),
			}
			if p.defJSON != "" {
				if err := json.Unmarshal([]byte(p.defJSON), &p.def); err != nil {
					panic(fmt.Sprintf("httpapi: %s.%s: bad default: %v", t, f.Name, err))
				}
			}
			out = append(out, p)
		}
	}
	walk(t, nil)
	return out
}

func floatTag(f reflect.StructField, key string) *float64 {
	s, ok := f.Tag.Lookup(key)
	if !ok {
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(fmt.Sprintf("httpapi: field %s: bad %s tag %q", f.Name, key, s))
	}
	return &v
}

// jsonType names the JSON type of a Go field type, as used in error
// messages ("want integer") and in the OpenAPI schema.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return "value"
}

// describeType is jsonType with the element type of arrays spelled out.
func describeType(t reflect.Type) string {
	if t == anyJSONType {
		return "any JSON value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice {
		return "array of " + jsonType(t.Elem()) + "s"
	}
	return jsonType(t)
}

// setDefaults writes every param's default into the struct v points to.
func setDefaults(v reflect.Value, ps []param) {
	for _, p := range ps {
		if p.defJSON == "" {
			continue
		}
		dst := v.Elem().FieldByIndex(p.index).Addr().Interface()
		if err := json.Unmarshal([]byte(p.defJSON), dst); err != nil {
			panic(fmt.Sprintf("httpapi: default of %q: %v", p.name, err))
		}
	}
}

// decodeParams decodes a request body into dst, a pointer to the method's
// params struct already holding the defaults, and validates it against ps.
// An empty body (or one of JSON whitespace only) is {}. Every error is an
// *httpError: invalid_json for malformed JSON, invalid_request otherwise.
func decodeParams(body []byte, ps []param, dst any) error {
	return decodeInto(body, paramSet{ps, dst})
}

// paramSet is one struct a request body is decoded into, with its params.
type paramSet struct {
	ps  []param
	dst any // pointer to the struct
}

// decodeInto is decodeParams for a body whose fields are spread over
// several structs (a method's params and the listener scope): each key
// must belong to one of them.
func decodeInto(body []byte, sets ...paramSet) error {
	body = bytes.Trim(body, " \t\r\n")
	var all []param
	for _, s := range sets {
		all = append(all, s.ps...)
	}
	var present map[string]bool
	if len(body) > 0 {
		if !utf8.Valid(body) {
			return invalidJSON("body is not valid UTF-8")
		}
		var err error
		// scanObject refuses every key that is not exactly a param of
		// one of the sets, so each decode may ignore the others' keys.
		if present, err = scanObject(body, all); err != nil {
			return err
		}
		for _, s := range sets {
			dec := json.NewDecoder(bytes.NewReader(body))
			if len(sets) == 1 {
				dec.DisallowUnknownFields()
			}
			dec.UseNumber() // session values keep their exact numbers
			if err := dec.Decode(s.dst); err != nil {
				return decodeError(err, all)
			}
		}
	}
	for _, s := range sets {
		if err := validate(reflect.ValueOf(s.dst).Elem(), s.ps, present); err != nil {
			return err
		}
	}
	return nil
}

// scanObject checks the shape of the body before it is decoded: one JSON
// object, nothing after it, only known keys (exact case: encoding/json alone
// would accept "CLIENT" for "client"), none twice. It returns the keys whose
// value is not null.
func scanObject(body []byte, ps []param) (map[string]bool, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(err, len(body))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, invalidRequest("body: want object, got %s", tokenKind(tok))
	}
	present := make(map[string]bool, len(ps))
	seen := make(map[string]bool, len(ps))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err, len(body))
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxError(err, len(body))
		}
		if !slices.ContainsFunc(ps, func(p param) bool { return p.name == key }) {
			return nil, unknownField(key, ps)
		}
		if seen[key] {
			return nil, fieldError(key, "given more than once")
		}
		seen[key] = true
		present[key] = string(raw) != "null"
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntaxError(err, len(body))
	}
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return present, nil
	case err != nil:
		return nil, syntaxError(err, len(body))
	default:
		return nil, invalidJSON("unexpected data after the object at offset %d", dec.InputOffset())
	}
}

func unknownField(key string, ps []param) error {
	if len(ps) == 0 {
		return invalidRequest("unknown field %q: this method takes no fields", key)
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return invalidRequest("unknown field %q (known: %s)", key, strings.Join(names, ", "))
}

func syntaxError(err error, n int) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return invalidJSON("invalid JSON at offset %d: %s", se.Offset, se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return invalidJSON("invalid JSON at offset %d: unexpected end of input", n)
	default:
		return invalidJSON("invalid JSON: %s", err.Error())
	}
}

func tokenKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "array"
		}
		return "object"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	default:
		return "number"
	}
}

// decodeError maps an error of json.Decoder.Decode on a body that
// scanObject accepted: in practice a type mismatch.
func decodeError(err error, ps []param) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		got := te.Value
		if strings.HasPrefix(got, "bool") {
			got = "boolean"
		}
		// Field is a dotted path that also names the embedded structs
		// ("pageParams.limit"): the first part that is a param is ours.
		i := -1
		for part := range strings.SplitSeq(te.Field, ".") {
			if i = slices.IndexFunc(ps, func(p param) bool { return p.name == part }); i >= 0 {
				break
			}
		}
		if i < 0 {
			return invalidRequest("body: want object, got %s", got)
		}
		p := ps[i]
		name := p.name
		base := p.typ
		for base.Kind() == reflect.Pointer {
			base = base.Elem()
		}
		if base.Kind() == reflect.Slice && te.Type == base.Elem() {
			return fieldError(name, "want %s, got an element of type %s", describeType(p.typ), got)
		}
		return fieldError(name, "want %s, got %s", describeType(p.typ), got)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		key, _ := strconv.Unquote(msg)
		return unknownField(key, ps)
	}
	return syntaxError(err, 0)
}

// validate checks required fields, the oneof/anyof groups and the numeric
// bounds of the fields present.
func validate(v reflect.Value, ps []param, present map[string]bool) error {
	for _, p := range ps {
		given, seen := present[p.name]
		if p.required && !given {
			if seen {
				return fieldError(p.name, "must not be null")
			}
			return fieldError(p.name, "required")
		}
		if given {
			if err := checkBounds(p, v.FieldByIndex(p.index)); err != nil {
				return err
			}
		}
	}
	if err := checkGroups(ps, present, func(p param) string { return p.oneOf }, true); err != nil {
		return err
	}
	return checkGroups(ps, present, func(p param) string { return p.anyOf }, false)
}

// checkGroups checks groups of fields of which exactly one (exact) or at
// least one must be present.
func checkGroups(ps []param, present map[string]bool, groupOf func(param) string, exact bool) error {
	var groups []string
	for _, p := range ps {
		if g := groupOf(p); g != "" && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		var names []string
		n := 0
		for _, p := range ps {
			if groupOf(p) == g {
				names = append(names, strconv.Quote(p.name))
				if present[p.name] {
					n++
				}
			}
		}
		switch {
		case n == 0:
			return invalidRequest("one of %s is required", strings.Join(names, " and "))
		case exact && n > 1:
			return invalidRequest("give only one of %s, not both", strings.Join(names, " and "))
		}
	}
	return nil
}

func checkBounds(p param, v reflect.Value) error {
	if p.min == nil && p.max == nil && p.gt == nil {
		return nil
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	var x float64
	switch {
	case v.CanInt():
		x = float64(v.Int())
	case v.CanUint():
		x = float64(v.Uint())
	case v.CanFloat():
		x = v.Float()
	default:
		return nil
	}
	low := (p.min == nil || x >= *p.min) && (p.gt == nil || x > *p.gt)
	if low && (p.max == nil || x <= *p.max) {
		return nil
	}
	return fieldError(p.name, "%s, got %s", boundsText(p), strconv.FormatFloat(x, 'g', -1, 64))
}

// boundsText says in words which values a numeric param accepts.
func boundsText(p param) string {
	g := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	switch {
	case p.gt != nil && p.max != nil:
		return fmt.Sprintf("must be greater than %s and at most %s", g(*p.gt), g(*p.max))
	case p.min != nil && p.max != nil:
		return fmt.Sprintf("must be between %s and %s", g(*p.min), g(*p.max))
	case p.gt != nil:
		return "must be greater than " + g(*p.gt)
	case p.min != nil && *p.min == 0:
		return "must not be negative"
	case p.min != nil:
		return "must be at least " + g(*p.min)
	default:
		return "must be at most " + g(*p.max)
	}
}
