package httpapi_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatework/gatework/httpapi"
)

const (
	readToken  = "r-0123456789"
	sendToken  = "s-0123456789"
	adminToken = "a-0123456789"
	scrapeTok  = "m-0123456789"
)

func scopedHandler(t *testing.T, logs *bytes.Buffer) (*httpapi.Handler, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{}
	cfg := httpapi.Config{
		Token: testToken, // legacy: admin
		Tokens: []httpapi.Token{
			{Name: "dash", Token: readToken, Scope: httpapi.ScopeRead},
			{Name: "pusher", Token: sendToken, Scope: httpapi.ScopeSend},
			{Name: "ops", Token: adminToken, Scope: httpapi.ScopeAdmin},
			{Name: "prom", Token: scrapeTok, Scope: httpapi.ScopeMetrics},
		},
	}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := httpapi.New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, f
}

func TestScopes(t *testing.T) {
	var logs bytes.Buffer
	h, f := scopedHandler(t, &logs)
	cases := []struct {
		name, path, body, token string
		status                  int
		code                    string
	}{
		{"no token", "/api/isOnline", `{"client":"c"}`, "", 401, "unauthorized"},
		{"wrong token", "/api/isOnline", `{"client":"c"}`, "nope", 401, "unauthorized"},
		{"wrong token, prefix of a right one", "/api/isOnline", `{"client":"c"}`, readToken[:5], 401, "unauthorized"},
		{"metrics on query", "/api/isOnline", `{"client":"c"}`, scrapeTok, 403, "insufficient_scope"},
		{"read on query", "/api/isOnline", `{"client":"c"}`, readToken, 200, ""},
		{"read on listing", "/api", "", readToken, 200, ""},
		{"read on send", "/api/sendToAll", `{"message":"x"}`, readToken, 403, "insufficient_scope"},
		{"read on close", "/api/closeClient", `{"client":"c"}`, readToken, 403, "insufficient_scope"},
		{"send on send", "/api/sendToAll", `{"message":"x"}`, sendToken, 200, ""},
		{"send on query", "/api/getClientCount", `{}`, sendToken, 200, ""},
		{"send on bind", "/api/bindUid", `{"client":"c","uid":"u"}`, sendToken, 403, "insufficient_scope"},
		{"send on alias of admin method", "/api/unBindUid", `{"client":"c"}`, sendToken, 403, "insufficient_scope"},
		{"send on session", "/api/setSession", `{"client":"c","session":{}}`, sendToken, 403, "insufficient_scope"},
		{"admin on ungroup", "/api/unGroup", `{"group":"g"}`, adminToken, 200, ""},
		{"admin on send", "/api/sendToUid", `{"uid":"u","message":"x"}`, adminToken, 200, ""},
		{"legacy token is admin", "/api/joinGroup", `{"client":"c","group":"g"}`, testToken, 200, ""},
		{"unknown method, no token", "/api/nope", `{}`, "", 401, "unauthorized"},
		{"unknown method, read token", "/api/nope", `{}`, readToken, 404, "unknown_method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count()
			method := http.MethodPost
			if tc.body == "" {
				method = http.MethodGet
			}
			r := httptest.NewRequest(method, tc.path, strings.NewReader(tc.body))
			r.RemoteAddr = "192.0.2.7:4000"
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.code != "" {
				if code, msg := errorOf(t, w.Body.Bytes()); code != tc.code {
					t.Errorf("code %q (%s), want %q", code, msg, tc.code)
				}
				if strings.Contains(w.Body.String(), "pusher") || strings.Contains(w.Body.String(), "dash") {
					t.Errorf("answer names a token: %s", w.Body)
				}
				if f.count() != before {
					t.Errorf("the API was called although refused")
				}
			}
			if tc.status == 403 && !strings.Contains(w.Header().Get("WWW-Authenticate"), "insufficient_scope") {
				t.Errorf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
		})
	}
	st := h.Stats()
	want := map[string]uint64{httpapi.AuthMissing: 2, httpapi.AuthWrong: 2, httpapi.AuthScope: 6}
	for reason, n := range want {
		if st.AuthFailures[reason] != n {
			t.Errorf("auth failures %s = %d, want %d (all %v)", reason, st.AuthFailures[reason], n, st.AuthFailures)
		}
	}
	if n := st.Calls[httpapi.Call{Method: "sendToAll", Status: 403}]; n != 1 {
		t.Errorf("calls sendToAll/403 = %d, want 1 (%v)", n, st.Calls)
	}
	if n := st.Calls[httpapi.Call{Method: "unbindUid", Status: 403}]; n != 1 {
		t.Errorf("the alias is counted under its method: unbindUid/403 = %d (%v)", n, st.Calls)
	}
	if n := st.Calls[httpapi.Call{Method: "other", Status: 404}]; n != 1 {
		t.Errorf("calls other/404 = %d (%v)", n, st.Calls)
	}
	if n := st.Calls[httpapi.Call{Method: "listMethods", Status: 200}]; n != 1 {
		t.Errorf("calls listMethods/200 = %d (%v)", n, st.Calls)
	}
	for _, secret := range []string{readToken, sendToken, adminToken, testToken} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a token is in the logs: %s", logs.String())
		}
	}
}

// TestEveryMethodHasScope checks the OpenAPI document names a scope for
// every operation, and that the ones of SPEC §4 are what the docs say.
func TestEveryMethodHasScope(t *testing.T) {
	h, _ := newHandler(t, httpapi.Config{})
	w := do(h, http.MethodGet, "/api/openapi.json", "", nil)
	var doc struct {
		Paths map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"sendToClient": "send", "sendToAll": "send", "getClientCount": "read", "getSession": "read",
		"closeClient": "admin", "bindUid": "admin", "joinGroup": "admin", "unGroup": "admin",
		"setSession": "admin", "deleteSession": "admin",
	}
	for _, name := range h.DispatchNames() {
		op := doc.Paths["/api/"+name]["post"]
		sc, _ := op["x-gatework-scope"].(string)
		if _, err := httpapi.ParseScope(sc); err != nil {
			t.Errorf("%s: x-gatework-scope %q", name, sc)
		}
		if w, ok := want[name]; ok && sc != w {
			t.Errorf("%s: scope %q, want %q", name, sc, w)
		}
	}
	// GET /api says the same.
	var listing struct {
		Methods []struct{ Name, Scope string } `json:"methods"`
	}
	if err := json.Unmarshal(do(h, http.MethodGet, "/api", "", nil).Body.Bytes(), &listing); err != nil {
		t.Fatal(err)
	}
	for _, m := range listing.Methods {
		if w, ok := want[m.Name]; (ok && m.Scope != w) || m.Scope == "" {
			t.Errorf("GET /api: %s has scope %q", m.Name, m.Scope)
		}
	}
	if len(listing.Methods) < len(want) {
		t.Errorf("GET /api lists %d methods", len(listing.Methods))
	}
}

func TestTokenValidation(t *testing.T) {
	bad := []struct {
		name string
		cfg  httpapi.Config
	}{
		{"no name", httpapi.Config{Tokens: []httpapi.Token{{Token: "x", Scope: httpapi.ScopeRead}}}},
		{"no scope", httpapi.Config{Tokens: []httpapi.Token{{Name: "a", Token: "x"}}}},
		{"empty secret", httpapi.Config{Tokens: []httpapi.Token{{Name: "a", Scope: httpapi.ScopeRead}}}},
		{"space", httpapi.Config{Tokens: []httpapi.Token{{Name: "a", Token: "x y", Scope: httpapi.ScopeRead}}}},
		{"name twice", httpapi.Config{Tokens: []httpapi.Token{
			{Name: "a", Token: "x", Scope: httpapi.ScopeRead}, {Name: "a", Token: "y", Scope: httpapi.ScopeRead}}}},
		{"secret twice", httpapi.Config{Tokens: []httpapi.Token{
			{Name: "a", Token: "x", Scope: httpapi.ScopeRead}, {Name: "b", Token: "x", Scope: httpapi.ScopeAdmin}}}},
		{"same as legacy", httpapi.Config{Token: "x", Tokens: []httpapi.Token{{Name: "a", Token: "x", Scope: httpapi.ScopeRead}}}},
	}
	for _, tc := range bad {
		_, err := httpapi.New(&fakeAPI{}, tc.cfg)
		if err == nil {
			t.Errorf("%s: New succeeded", tc.name)
			continue
		}
		if strings.Contains(err.Error(), `"x"`) || strings.Contains(err.Error(), "x y") {
			t.Errorf("%s: the error shows the secret: %v", tc.name, err)
		}
	}
	for _, s := range []string{"metrics", "read", "send", "admin"} {
		sc, err := httpapi.ParseScope(s)
		if err != nil || sc.String() != s {
			t.Errorf("ParseScope(%q) = %v, %v", s, sc, err)
		}
	}
	if _, err := httpapi.ParseScope("root"); err == nil {
		t.Error("ParseScope(root) succeeded")
	}
}

func TestRequire(t *testing.T) {
	h, _ := scopedHandler(t, nil)
	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("inner")) })
	guarded := h.Require(httpapi.ScopeMetrics, inner)
	cases := []struct {
		token  string
		status int
	}{{"", 401}, {"bad", 401}, {scrapeTok, 200}, {readToken, 200}, {adminToken, 200}}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.token != "" {
			r.Header.Set("Authorization", "Bearer "+tc.token)
		}
		w := httptest.NewRecorder()
		guarded.ServeHTTP(w, r)
		if w.Code != tc.status || (tc.status == 200) != (w.Body.String() == "inner") {
			t.Errorf("token %q: %d %s, want %d", tc.token, w.Code, w.Body, tc.status)
		}
	}
	if st := h.Stats(); st.AuthFailures[httpapi.AuthMissing] != 1 || st.AuthFailures[httpapi.AuthWrong] != 1 {
		t.Errorf("auth failures %v", st.AuthFailures)
	}
}
