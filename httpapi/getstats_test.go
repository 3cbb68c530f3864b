package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/httpapi"
)

// TestGetStatsScopes checks who may call getStats: read and above, not
// metrics, not without a token.
func TestGetStatsScopes(t *testing.T) {
	h, _ := newHandler(t, httpapi.Config{Tokens: []httpapi.Token{
		{Name: "m", Token: "metrics-token", Scope: httpapi.ScopeMetrics},
		{Name: "r", Token: "read-token", Scope: httpapi.ScopeRead},
	}})
	for _, tc := range []struct {
		token string
		want  int
		code  string
	}{
		{"read-token", http.StatusOK, ""},
		{testToken, http.StatusOK, ""},
		{"metrics-token", http.StatusForbidden, httpapi.CodeInsufficientScope},
		{"", http.StatusUnauthorized, httpapi.CodeUnauthorized},
		{"wrong", http.StatusUnauthorized, httpapi.CodeUnauthorized},
	} {
		auth := "Bearer " + tc.token
		if tc.token == "" {
			auth = ""
		}
		w := do(h, http.MethodPost, "/api/getStats", "{}", map[string]string{"Authorization": auth, "Content-Type": "application/json"})
		if w.Code != tc.want {
			t.Errorf("token %q: status %d, want %d: %s", tc.token, w.Code, tc.want, w.Body)
			continue
		}
		if tc.code != "" {
			if code, _ := errorOf(t, w.Body.Bytes()); code != tc.code {
				t.Errorf("token %q: code %q, want %q", tc.token, code, tc.code)
			}
		}
	}
}

// TestGetStatsWithoutStatsAPI checks that an api.API without GetStats
// answers 404 unknown_method rather than failing.
func TestGetStatsWithoutStatsAPI(t *testing.T) {
	f := &fakeAPI{}
	h, err := httpapi.New(struct{ api.API }{f}, httpapi.Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	w := do(h, http.MethodPost, "/api/getStats", "{}", nil)
	if w.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404: %s", w.Code, w.Body)
	}
	if code, _ := errorOf(t, w.Body.Bytes()); code != httpapi.CodeUnknownMethod {
		t.Errorf("code %q, want %q", code, httpapi.CodeUnknownMethod)
	}
	if f.count() != 0 {
		t.Errorf("the API was called %d times", f.count())
	}
}
