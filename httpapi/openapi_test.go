package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gatework/gatework/httpapi"
)

// getJSON fetches a document of the handler and decodes it.
func getJSON(t *testing.T, h http.Handler, path string) map[string]any {
	t.Helper()
	w := do(h, http.MethodGet, path, "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return doc
}

func TestListing(t *testing.T) {
	h, _ := newHandler(t, httpapi.Config{})
	for _, path := range []string{"/api", "/api/"} {
		doc := getJSON(t, h, path)
		var names []string
		for _, m := range doc["methods"].([]any) {
			m := m.(map[string]any)
			names = append(names, m["name"].(string))
			if aliases, ok := m["aliases"].([]any); ok {
				for _, a := range aliases {
					names = append(names, a.(string))
				}
			}
			if m["description"] == "" || m["result"] == "" {
				t.Errorf("%s: empty description or result", m["name"])
			}
			for _, p := range m["params"].([]any) {
				p := p.(map[string]any)
				if p["name"] == "" || p["type"] == "" || p["description"] == "" {
					t.Errorf("%s: param %v undocumented", m["name"], p)
				}
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, h.DispatchNames()) {
			t.Errorf("GET %s lists %v\ndispatch has %v", path, names, h.DispatchNames())
		}
	}
	if w := do(h, http.MethodHead, "/api", "", nil); w.Code != http.StatusOK {
		t.Errorf("HEAD /api: %d", w.Code)
	}
}

func TestOpenAPIMatchesDispatch(t *testing.T) {
	h, _ := newHandler(t, httpapi.Config{})
	doc := getJSON(t, h, "/api/openapi.json")
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v", doc["openapi"])
	}
	var names []string
	for path, item := range doc["paths"].(map[string]any) {
		post, ok := item.(map[string]any)["post"].(map[string]any)
		if !ok {
			continue
		}
		name := strings.TrimPrefix(path, "/api/")
		names = append(names, name)
		if post["operationId"] != name {
			t.Errorf("%s: operationId %v", path, post["operationId"])
		}
		for _, status := range []string{"200", "400", "401", "404", "500"} {
			if _, ok := post["responses"].(map[string]any)[status]; !ok {
				t.Errorf("%s: no %s response", path, status)
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, h.DispatchNames()) {
		t.Errorf("openapi.json has %v\ndispatch has %v", names, h.DispatchNames())
	}
	for _, name := range names {
		w := do(h, http.MethodPost, "/api/"+name, "{}", nil)
		if code := w.Code; code == http.StatusNotFound {
			if c, _ := errorOf(t, w.Body.Bytes()); c == "unknown_method" {
				t.Errorf("%s documented but not dispatched", name)
			}
		}
	}
}

// TestOpenAPISchemas validates every request and answer of methodCases,
// and error answers, against the schemas of the OpenAPI document.
func TestOpenAPISchemas(t *testing.T) {
	h, _ := newHandler(t, httpapi.Config{})
	doc := getJSON(t, h, "/api/openapi.json")
	v := validator{doc: doc}
	paths := doc["paths"].(map[string]any)
	for i, tc := range methodCases {
		op := paths["/api/"+tc.path].(map[string]any)["post"].(map[string]any)
		reqSchema := dig(op, "requestBody", "content", "application/json", "schema")
		body := tc.body
		if strings.TrimSpace(body) == "" {
			body = "{}"
		}
		var req any
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			t.Fatal(err)
		}
		if err := v.check(reqSchema, req, "request"); err != nil {
			t.Errorf("case %d %s: request %s: %v", i, tc.path, tc.body, err)
		}
		w := do(h, http.MethodPost, "/api/"+tc.path, tc.body, nil)
		var resp any
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		respSchema := dig(op, "responses", "200", "content", "application/json", "schema")
		if err := v.check(respSchema, resp, "response"); err != nil {
			t.Errorf("case %d %s: response %s: %v", i, tc.path, w.Body, err)
		}
	}
	// Requests the schema must refuse, as the handler does.
	refused := map[string]string{
		"sendToAll":     `{"message":"a","message_base64":"YQ=="}`,
		"sendToUid":     `{"message":"a"}`,
		"isOnline":      `{"clinet":"c"}`,
		"getClientInfo": `{"client":"c","fields":256}`,
		"getUidCount":   `{"unique_percent":0}`,
	}
	for name, body := range refused {
		op := paths["/api/"+name].(map[string]any)["post"].(map[string]any)
		var req any
		_ = json.Unmarshal([]byte(body), &req)
		if err := v.check(dig(op, "requestBody", "content", "application/json", "schema"), req, "request"); err == nil {
			t.Errorf("%s: schema accepts %s", name, body)
		}
		w := do(h, http.MethodPost, "/api/"+name, body, nil)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s %s: status %d", name, body, w.Code)
		}
		var resp any
		_ = json.Unmarshal(w.Body.Bytes(), &resp)
		if err := v.check(dig(doc, "components", "schemas", "Error"), resp, "error"); err != nil {
			t.Errorf("%s: error answer %s: %v", name, w.Body, err)
		}
	}
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		v = v.(map[string]any)[k]
	}
	return v
}

// validator checks a JSON value against the subset of JSON Schema the
// document uses: $ref, type, enum, properties, required,
// additionalProperties, items, minimum, maximum, exclusiveMinimum, oneOf,
// anyOf, allOf.
type validator struct{ doc map[string]any }

func (v validator) check(schema, val any, at string) error {
	s, ok := schema.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: bad schema %v", at, schema)
	}
	if r, ok := s["$ref"].(string); ok {
		keys := strings.Split(strings.TrimPrefix(r, "#/"), "/")
		return v.check(dig(v.doc, keys...), val, at)
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				types = append(types, x.(string))
			}
		}
		if !slices.Contains(types, kindOf(val)) && !(kindOf(val) == "integer" && slices.Contains(types, "number")) {
			return fmt.Errorf("%s: %s is not %v", at, kindOf(val), types)
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, val) {
		return fmt.Errorf("%s: %v not in enum", at, val)
	}
	if x, ok := val.(float64); ok {
		if m, ok := s["minimum"].(float64); ok && x < m {
			return fmt.Errorf("%s: %v < minimum %v", at, x, m)
		}
		if m, ok := s["maximum"].(float64); ok && x > m {
			return fmt.Errorf("%s: %v > maximum %v", at, x, m)
		}
		if m, ok := s["exclusiveMinimum"].(float64); ok && x <= m {
			return fmt.Errorf("%s: %v <= exclusiveMinimum %v", at, x, m)
		}
	}
	if o, ok := val.(map[string]any); ok {
		props, _ := s["properties"].(map[string]any)
		for _, r := range asSlice(s["required"]) {
			if _, ok := o[r.(string)]; !ok {
				return fmt.Errorf("%s: missing %q", at, r)
			}
		}
		for k, x := range o {
			if ps, ok := props[k]; ok {
				if err := v.check(ps, x, at+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: unexpected key %q", at, k)
				}
			case map[string]any:
				if err := v.check(ap, x, at+"."+k); err != nil {
					return err
				}
			}
		}
	}
	if a, ok := val.([]any); ok {
		if items, ok := s["items"]; ok {
			for i, x := range a {
				if err := v.check(items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	}
	for _, sub := range asSlice(s["allOf"]) {
		if err := v.check(sub, val, at); err != nil {
			return err
		}
	}
	if subs := asSlice(s["anyOf"]); subs != nil && v.matches(subs, val, at) == 0 {
		return fmt.Errorf("%s: matches none of anyOf", at)
	}
	if subs := asSlice(s["oneOf"]); subs != nil && v.matches(subs, val, at) != 1 {
		return fmt.Errorf("%s: does not match exactly one of oneOf", at)
	}
	return nil
}

func (v validator) matches(subs []any, val any, at string) int {
	n := 0
	for _, sub := range subs {
		if v.check(sub, val, at) == nil {
			n++
		}
	}
	return n
}

func asSlice(x any) []any {
	s, _ := x.([]any)
	return s
}

func kindOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if v == float64(int64(v)) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}
