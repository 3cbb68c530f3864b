package httpapi

import (
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gatework/gatework/api"
)

// This file builds the two self-descriptions of the API, GET /api and
// GET /api/openapi.json, from methodTable: what is dispatched is what is
// documented.

// obj is a JSON object under construction; encoding/json sorts its keys.
type obj = map[string]any

// resultText is how GET /api describes each result kind.
var resultText = map[resultKind]string{
	resultNull:            "null",
	resultBool:            "boolean",
	resultCoveredBool:     "boolean, with partial and missing beside result",
	resultCoveredCount:    "integer, with partial and missing beside result",
	resultPage:            "page {items, next_cursor, partial, missing}",
	resultClientInfo:      "object with the keys selected by fields",
	resultSession:         "session object",
	resultCoveredSessions: "object {client id: session}, with partial and missing beside result",
	resultCoveredStats:    "stats {time_unix_ms, totals, gateways, workers}, with partial and missing beside result",
	resultCoveredBoolMap:  "object {name: boolean}, with partial and missing beside result",
	resultCoveredCountMap: "object {name: integer}, with partial and missing beside result",
	resultCoveredListMap:  "object {name: [client id]}, with partial and missing beside result",
	resultTaskID:          "task id (string)",
	resultTaskOutcome:     "object {result, result_base64, error}",
	resultSessionPage:     "page {sessions: {client id: session}, next_cursor, partial, missing}",
	resultGroupCounts:     "object {counts: {group: integer}, truncated}, with partial and missing beside result",
	resultGroupListPage:   "page {groups: {group: [client id]}, next_cursor, partial, missing}",
}

// listingJSON is the body of GET /api.
func listingJSON() ([]byte, error) {
	type paramDoc struct {
		Name        string `json:"name"`
		Type        string `json:"type"`
		Required    bool   `json:"required"`
		Default     any    `json:"default,omitempty"`
		Description string `json:"description"`
	}
	type methodDoc struct {
		Name        string     `json:"name"`
		Aliases     []string   `json:"aliases,omitempty"`
		Path        string     `json:"path"`
		Description string     `json:"description"`
		Params      []paramDoc `json:"params"`
		Result      string     `json:"result"`
		Scope       string     `json:"scope"` // the token scope it needs
	}
	docs := make([]methodDoc, 0, len(methodTable))
	for _, m := range methodTable {
		md := methodDoc{
			Name:        m.name,
			Aliases:     m.aliases,
			Path:        "/api/" + m.name,
			Description: m.summary,
			Params:      []paramDoc{},
			Result:      resultText[m.result],
			Scope:       scopeOf(m).String(),
		}
		for _, p := range m.params {
			md.Params = append(md.Params, paramDoc{
				Name:        p.name,
				Type:        describeType(p.typ),
				Required:    p.required,
				Default:     p.def,
				Description: paramDescription(p),
			})
		}
		docs = append(docs, md)
	}
	return marshal(obj{"methods": docs, "openapi": "/api/openapi.json"})
}

// paramDescription is the doc of p with its bounds in words.
func paramDescription(p param) string {
	if p.min == nil && p.max == nil && p.gt == nil {
		return p.doc
	}
	return p.doc + " (" + boundsText(p) + ")"
}

// openAPIJSON is the body of GET /api/openapi.json.
func openAPIJSON() ([]byte, error) {
	paths := obj{
		"/api": obj{"get": obj{
			"operationId": "listMethods",
			"summary":     "The methods of the API, their params and results.",
			"responses": obj{
				"200":     jsonResponse("The method list.", obj{"type": "object"}),
				"401":     ref("#/components/responses/Unauthorized"),
				"403":     ref("#/components/responses/Forbidden"),
				"405":     ref("#/components/responses/MethodNotAllowed"),
				"default": ref("#/components/responses/Error"),
			},
		}},
		"/api/openapi.json": obj{"get": obj{
			"operationId": "openAPI",
			"summary":     "This document.",
			"responses": obj{
				"200":     jsonResponse("The OpenAPI document.", obj{"type": "object"}),
				"401":     ref("#/components/responses/Unauthorized"),
				"403":     ref("#/components/responses/Forbidden"),
				"405":     ref("#/components/responses/MethodNotAllowed"),
				"default": ref("#/components/responses/Error"),
			},
		}},
	}
	for _, m := range methodTable {
		for _, name := range append([]string{m.name}, m.aliases...) {
			op := operation(m, name)
			paths["/api/"+name] = obj{"post": op}
		}
	}
	doc := obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":   "gatework HTTP API",
			"version": "1",
			"description": "Every method of the gatework API (send, bind, groups, sessions, counts and lists) " +
				"as POST /api/<method> with a JSON object body. An empty body is {}. " +
				"Errors are {\"error\":{\"code\",\"message\"}} with a stable code.",
		},
		"security": []obj{{"bearerAuth": []string{}}},
		"paths":    paths,
		"components": obj{
			"securitySchemes": obj{"bearerAuth": obj{
				"type":   "http",
				"scheme": "bearer",
				"description": "Authorization: Bearer <token>. Each token has a scope: metrics (the node's /metrics only), read (queries, GET /api, /metrics), " +
					"send (read plus the sendTo* methods) or admin (everything, including close, bind, groups and sessions); " +
					"each operation names the scope it needs in x-gatework-scope and its description. " +
					"A missing or unknown token gets 401 unauthorized, a token of too low a scope 403 insufficient_scope. " +
					"With no token configured, only loopback callers are served (others get 403 forbidden), " +
					"the Host header must be 127.0.0.1, [::1] or localhost (else 403 forbidden_host), " +
					"an Origin header must be the API's own origin (else 403 forbidden_origin), " +
					"and a method call must send Content-Type: application/json (else 415 unsupported_media_type).",
			}},
			"schemas":   componentSchemas(),
			"responses": errorResponses(),
		},
	}
	return marshal(doc)
}

func ref(to string) obj { return obj{"$ref": to} }

func jsonResponse(description string, schema obj) obj {
	return obj{
		"description": description,
		"content":     obj{"application/json": obj{"schema": schema}},
	}
}

// operation is the OpenAPI operation of m served under name.
func operation(m *method, name string) obj {
	description := m.summary
	if name != m.name {
		description = "Alias of " + m.name + ". " + description
	}
	scope := scopeOf(m)
	description += " Needs a token of scope " + scope.String() + scopeAbove[scope] + "."
	schema, required := requestSchema(m.params)
	return obj{
		"operationId":      name,
		"x-gatework-scope": scope.String(),
		"summary":          m.summary,
		"description":      description,
		"requestBody": obj{
			"required": required,
			"content":  obj{"application/json": obj{"schema": schema}},
		},
		"responses": obj{
			"200":     jsonResponse("Success.", successSchema(m.result)),
			"400":     ref("#/components/responses/BadRequest"),
			"401":     ref("#/components/responses/Unauthorized"),
			"403":     ref("#/components/responses/Forbidden"),
			"404":     ref("#/components/responses/NotFound"),
			"408":     ref("#/components/responses/RequestTimeout"),
			"413":     ref("#/components/responses/TooLarge"),
			"415":     ref("#/components/responses/UnsupportedMediaType"),
			"500":     ref("#/components/responses/Internal"),
			"503":     ref("#/components/responses/Unavailable"),
			"504":     ref("#/components/responses/Timeout"),
			"default": ref("#/components/responses/Error"),
		},
	}
}

// requestSchema is the schema of a request body with params ps, and
// whether a body is needed at all (some field or group is required).
func requestSchema(ps []param) (obj, bool) {
	props := obj{}
	required := []string{}
	var rules []obj
	groups := map[string][]string{}
	var groupOrder []string
	for _, p := range ps {
		props[p.name] = paramSchema(p)
		if p.required {
			required = append(required, p.name)
		}
		for _, g := range []string{p.oneOf, p.anyOf} {
			if g == "" {
				continue
			}
			key := "anyOf:" + g
			if g == p.oneOf {
				key = "oneOf:" + g
			}
			if _, ok := groups[key]; !ok {
				groupOrder = append(groupOrder, key)
			}
			groups[key] = append(groups[key], p.name)
		}
	}
	for _, key := range groupOrder {
		kind, _, _ := strings.Cut(key, ":")
		var alts []obj
		for _, name := range groups[key] {
			alts = append(alts, obj{"required": []string{name}})
		}
		rules = append(rules, obj{kind: alts})
	}
	s := obj{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	switch len(rules) {
	case 0:
	case 1:
		for k, v := range rules[0] {
			s[k] = v
		}
	default:
		s["allOf"] = rules
	}
	return s, len(required) > 0 || len(rules) > 0
}

// paramSchema is the schema of one request field. Optional fields also
// accept null, which means absent.
func paramSchema(p param) obj {
	if p.typ == anyJSONType {
		return obj{"description": p.doc} // any JSON value
	}
	s := typeSchema(p.typ)
	if !p.required {
		s["type"] = []string{s["type"].(string), "null"}
	}
	if p.doc != "" {
		s["description"] = p.doc
	}
	if p.def != nil {
		s["default"] = p.def
	}
	if p.min != nil {
		s["minimum"] = *p.min
	}
	if p.gt != nil {
		s["exclusiveMinimum"] = *p.gt
	}
	if p.max != nil {
		s["maximum"] = *p.max
	}
	if p.name == "message_base64" {
		s["contentEncoding"] = "base64"
	}
	return s
}

var (
	timeType    = reflect.TypeFor[time.Time]()
	anyJSONType = reflect.TypeFor[anyJSON]()
)

// typeSchema is the schema of a Go type: scalars, slices, maps of any,
// time.Time and structs with json tags.
func typeSchema(t reflect.Type) obj {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return obj{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Slice:
		return obj{"type": "array", "items": typeSchema(t.Elem())}
	case t.Kind() == reflect.Map:
		return obj{"type": "object"}
	case t.Kind() == reflect.Struct:
		props := obj{}
		var required []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			props[name] = typeSchema(f.Type)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
		s := obj{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return obj{"type": jsonType(t)}
}

func coveredSchema(result obj) obj {
	return obj{
		"type":     "object",
		"required": []string{"result", "partial", "missing"},
		"properties": obj{
			"result":  result,
			"partial": obj{"type": "boolean", "description": "true when some gateway did not answer in time"},
			"missing": obj{"type": "array", "items": obj{"type": "string"}, "description": "ids of the gateways that did not answer, sorted"},
		},
		"additionalProperties": false,
	}
}

// successSchema is the schema of a 200 answer of the given kind.
func successSchema(kind resultKind) obj {
	plain := func(result obj) obj {
		return obj{
			"type":                 "object",
			"required":             []string{"result"},
			"properties":           obj{"result": result},
			"additionalProperties": false,
		}
	}
	switch kind {
	case resultBool:
		return plain(obj{"type": "boolean"})
	case resultCoveredBool:
		return coveredSchema(obj{"type": "boolean"})
	case resultCoveredCount:
		return coveredSchema(obj{"type": "integer", "minimum": 0})
	case resultPage:
		return plain(ref("#/components/schemas/Page"))
	case resultClientInfo:
		return plain(ref("#/components/schemas/ClientInfo"))
	case resultSession:
		return plain(ref("#/components/schemas/Session"))
	case resultCoveredSessions:
		return coveredSchema(obj{"type": "object", "additionalProperties": ref("#/components/schemas/Session")})
	case resultCoveredStats:
		return coveredSchema(ref("#/components/schemas/Stats"))
	case resultCoveredBoolMap:
		return coveredSchema(obj{"type": "object", "additionalProperties": obj{"type": "boolean"}})
	case resultCoveredListMap:
		return coveredSchema(obj{"type": "object", "additionalProperties": obj{"type": "array", "items": obj{"type": "string"}}})
	case resultCoveredCountMap:
		return coveredSchema(obj{"type": "object", "additionalProperties": obj{"type": "integer", "minimum": 0}})
	case resultTaskID:
		return plain(obj{"type": "string"})
	case resultTaskOutcome:
		return plain(obj{"type": "object", "additionalProperties": false,
			"required": []string{"result", "result_base64", "error"},
			"properties": obj{
				"result":        obj{"type": []string{"string", "null"}, "description": "the handler's result when it is UTF-8"},
				"result_base64": obj{"type": "string", "description": "the handler's result, base64"},
				"error":         obj{"type": []string{"string", "null"}, "description": "the handler's error"},
			}})
	case resultSessionPage:
		return plain(pageSchema("sessions", obj{"type": "object", "additionalProperties": ref("#/components/schemas/Session"),
			"description": "the session of each client of the page, by client id"}))
	case resultGroupListPage:
		return plain(pageSchema("groups", obj{"type": "object", "additionalProperties": obj{"type": "array", "items": obj{"type": "string"}},
			"description": "the client ids of each group of the page, ascending, by group"}))
	case resultGroupCounts:
		return coveredSchema(obj{
			"type":     "object",
			"required": []string{"counts", "truncated"},
			"properties": obj{
				"counts":    obj{"type": "object", "additionalProperties": obj{"type": "integer", "minimum": 0}},
				"truncated": obj{"type": "boolean", "description": "true when a gateway had more groups (or uids) than it answers at once: counts is incomplete or an upper bound"},
			},
			"additionalProperties": false,
		})
	default:
		return plain(obj{"type": "null"})
	}
}

// pageSchema is a page whose items are the object key holds.
func pageSchema(key string, items obj) obj {
	return obj{
		"type":     "object",
		"required": []string{key, "next_cursor", "partial", "missing"},
		"properties": obj{
			key:           items,
			"next_cursor": obj{"type": "string", "description": "cursor of the next page; empty on the last page"},
			"partial":     obj{"type": "boolean", "description": "true when some gateway did not answer in time"},
			"missing":     obj{"type": "array", "items": obj{"type": "string"}, "description": "ids of the gateways that did not answer, sorted"},
		},
		"additionalProperties": false,
	}
}

func componentSchemas() obj {
	system := typeSchema(reflect.TypeFor[api.SystemInfo]())
	system["type"] = []string{"object", "null"}
	strs := obj{"type": "array", "items": obj{"type": "string"}}
	stats := typeSchema(reflect.TypeFor[api.Stats]())
	stats["description"] = "getStats: time_unix_ms is when the answer was assembled; totals sum the gateways that answered " +
		"(uids and groups sum each gateway's distinct count); gateways are sorted by id, each with its process (pid, " +
		"started_unix_ms, now_unix_ms, rss_bytes, bus) and counters that only grow; workers are the workers the gateways " +
		"know by id, with pid, started_unix_ms, rss_bytes, bus, handled, state (idle or busy) and busy when a gateway's node " +
		"runs them; processes are the user processes of the gateways' nodes (name, gateway, pid, restarts, failing)."
	return obj{
		"Stats":   stats,
		"Session": obj{"type": "object", "description": "a connection's key-value session"},
		"Page": obj{
			"type":     "object",
			"required": []string{"items", "next_cursor", "partial", "missing"},
			"properties": obj{
				"items":       strs,
				"next_cursor": obj{"type": "string", "description": "cursor of the next page; empty on the last page"},
				"partial":     obj{"type": "boolean", "description": "true when some gateway did not answer in time"},
				"missing":     obj{"type": "array", "items": obj{"type": "string"}, "description": "ids of the gateways that did not answer, sorted"},
			},
			"additionalProperties": false,
		},
		"ClientInfo": obj{
			"type":        "object",
			"description": "only the keys selected by fields are present",
			"properties": obj{
				"remote_ip":   obj{"type": "string"},
				"remote_port": obj{"type": "integer"},
				"uid":         obj{"type": "string", "description": "empty when not bound"},
				"session":     ref("#/components/schemas/Session"),
				"groups":      strs,
				"system":      system,
			},
			"additionalProperties": false,
		},
		"Error": obj{
			"type":     "object",
			"required": []string{"error"},
			"properties": obj{"error": obj{
				"type":     "object",
				"required": []string{"code", "message"},
				"properties": obj{
					"code":    obj{"type": "string", "enum": errorCodes},
					"message": obj{"type": "string"},
				},
				"additionalProperties": false,
			}},
			"additionalProperties": false,
		},
	}
}

// scopeAbove names the scopes that include a scope, for descriptions.
var scopeAbove = map[Scope]string{ScopeRead: " (or send, admin)", ScopeSend: " (or admin)", ScopeAdmin: ""}

// errorCodes is every Code constant, for the Error schema.
var errorCodes = []string{
	CodeInvalidJSON, CodeInvalidRequest, CodeInvalidClient, CodeNotFound, CodeUnknownMethod,
	CodeMethodNotAllowed, CodeTooLarge, CodeUnsupportedMediaType, CodeRequestTimeout, CodeUnauthorized,
	CodeForbidden, CodeForbiddenHost, CodeForbiddenOrigin, CodeInsufficientScope, CodeTimeout,
	CodeUnavailable, CodeTooManyConnections, CodeInternal, CodeUnknownListener,
}

func errorResponses() obj {
	errResp := func(status int, codes ...string) obj {
		quoted := make([]string, len(codes))
		for i, c := range codes {
			quoted[i] = strconv.Quote(c)
		}
		desc := http.StatusText(status)
		if len(codes) > 0 {
			desc += ": code " + strings.Join(quoted, " or ")
		}
		return jsonResponse(desc, ref("#/components/schemas/Error"))
	}
	out := obj{
		"BadRequest":           errResp(http.StatusBadRequest, CodeInvalidJSON, CodeInvalidRequest, CodeInvalidClient, CodeUnknownListener),
		"Unauthorized":         errResp(http.StatusUnauthorized, CodeUnauthorized),
		"Forbidden":            errResp(http.StatusForbidden, CodeForbidden, CodeForbiddenHost, CodeForbiddenOrigin, CodeInsufficientScope),
		"RequestTimeout":       errResp(http.StatusRequestTimeout, CodeRequestTimeout),
		"NotFound":             errResp(http.StatusNotFound, CodeNotFound, CodeUnknownMethod),
		"MethodNotAllowed":     errResp(http.StatusMethodNotAllowed, CodeMethodNotAllowed),
		"TooLarge":             errResp(http.StatusRequestEntityTooLarge, CodeTooLarge),
		"UnsupportedMediaType": errResp(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType),
		"Internal":             errResp(http.StatusInternalServerError, CodeInternal),
		"Unavailable":          errResp(http.StatusServiceUnavailable, CodeUnavailable, CodeTooManyConnections, CodeOverloaded),
		"Timeout":              errResp(http.StatusGatewayTimeout, CodeTimeout),
		"Error":                jsonResponse("An error.", ref("#/components/schemas/Error")),
	}
	return out
}
