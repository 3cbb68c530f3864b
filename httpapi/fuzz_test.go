package httpapi_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// FuzzTokenlessGuards sends arbitrary Host and Origin headers to an API
// without a token: it must never panic, must answer JSON, and may serve
// only a Host that names this machine without DNS (a loopback IP literal
// or localhost) and an Origin that is absent or names that same host.
func FuzzTokenlessGuards(f *testing.F) {
	h, err := httpapi.New(&fakeAPI{discard: true}, httpapi.Config{})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][2]string{
		{"127.0.0.1:7280", ""}, {"localhost", "http://localhost"}, {"[::1]:80", "http://[::1]"},
		{"evil.example", ""}, {"127.0.0.1:7280", "null"}, {"[::1", "http://[::1"}, {"localhost.:1", "http://LOCALHOST.:1"},
		{"127.0.0.1%25lo", ""}, {"[fe80::1%25lo]:1", ""}, {":", "http://:"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, origin string) {
		r := httptest.NewRequest(http.MethodPost, "/api/getClientCount", strings.NewReader(`{}`))
		r.RemoteAddr = "127.0.0.1:40000"
		r.Host = host
		r.Header.Set("Content-Type", "application/json")
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("host %q origin %q: invalid JSON answer %q", host, origin, w.Body)
		}
		if w.Code != http.StatusOK {
			return
		}
		name := host
		if hn, _, err := net.SplitHostPort(host); err == nil {
			name = hn
		}
		name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"), ".")
		if ip := net.ParseIP(name); (ip == nil || !ip.IsLoopback()) && !strings.EqualFold(name, "localhost") {
			t.Fatalf("served Host %q (origin %q)", host, origin)
		}
		if origin != "" {
			u, err := url.Parse(origin)
			if err != nil || !strings.EqualFold(u.Scheme, "http") || u.Hostname() == "" ||
				!strings.EqualFold(strings.TrimSuffix(u.Hostname(), "."), name) && !strings.EqualFold(u.Hostname(), name) {
				t.Fatalf("served Origin %q for Host %q", origin, host)
			}
		}
	})
}
