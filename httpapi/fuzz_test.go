package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatework/gatework/httpapi"
)

// FuzzRequestBody sends arbitrary bodies to every method: the handler must
// never panic, and must always answer valid JSON with a 2xx or 4xx status
// (bad input is never a 500).
func FuzzRequestBody(f *testing.F) {
	fake := &fakeAPI{discard: true}
	h, err := httpapi.New(fake, httpapi.Config{Token: testToken, MaxBodyBytes: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	names := h.DispatchNames()
	for i, tc := range methodCases {
		f.Add(uint8(i), []byte(tc.body))
	}
	for _, s := range []string{
		``, `{`, `}`, `null`, `[]`, `"x"`, `1`, `{"client":"c","client":"c"}`,
		`{"message_base64":"!!"}`, `{"limit":-1e400}`, `{"unique_percent":1e-400}`,
		`{"session":{"a":1e999}}`, `{"uids":[null]}`, `{"fields":1.0}`,
		"{\"message\":\"\\ud800\"}", "\xef\xbb\xbf{}", `{} {}`, strings.Repeat("[", 300),
	} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(len(names)/2), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		name := names[int(which)%len(names)]
		r := httptest.NewRequest(http.MethodPost, "/api/"+name, strings.NewReader(string(body)))
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code < 200 || w.Code >= 500 || (w.Code >= 300 && w.Code < 400) {
			t.Fatalf("%s %q: status %d: %s", name, body, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %q: invalid JSON answer %q", name, body, w.Body)
		}
		if w.Code >= 400 {
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %q: bad error answer %s", name, body, w.Body)
			}
		}
	})
}
