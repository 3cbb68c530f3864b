package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/httpapi"
)

// TestTokenlessBrowserGuards checks what keeps web pages open in a browser
// on the machine away from a token-less API: the Host must be a loopback
// name (DNS rebinding), an Origin must be the API's own, and a method call
// must say application/json (no CORS "simple" request). With a token none
// of it applies, except that other media types than JSON are still
// refused.
func TestTokenlessBrowserGuards(t *testing.T) {
	open, err := httpapi.New(&fakeAPI{}, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	closed, err := httpapi.New(&fakeAPI{}, httpapi.Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	const json = "application/json"
	cases := []struct {
		name   string
		h      *httpapi.Handler
		token  bool
		host   string
		origin string // "" means none
		ctype  string // "" means none
		status int
		code   string
	}{
		{name: "ip and port", h: open, host: "127.0.0.1:7280", ctype: json, status: 200},
		{name: "ip", h: open, host: "127.0.0.1", ctype: json, status: 200},
		{name: "127/8", h: open, host: "127.9.8.7:1", ctype: json, status: 200},
		{name: "localhost", h: open, host: "localhost:7280", ctype: json, status: 200},
		{name: "LOCALHOST", h: open, host: "LOCALHOST", ctype: json, status: 200},
		{name: "localhost dot", h: open, host: "localhost.:7280", ctype: json, status: 200},
		{name: "v6", h: open, host: "[::1]:7280", ctype: json, status: 200},
		{name: "v6 no port", h: open, host: "[::1]", ctype: json, status: 200},
		{name: "v4-mapped", h: open, host: "[::ffff:127.0.0.1]:7280", ctype: json, status: 200},
		{name: "rebound name", h: open, host: "evil.example:7280", ctype: json, status: 403, code: "forbidden_host"},
		{name: "rebound name no port", h: open, host: "evil.example", ctype: json, status: 403, code: "forbidden_host"},
		{name: "localhost subdomain of evil", h: open, host: "localhost.evil.example", ctype: json, status: 403, code: "forbidden_host"},
		{name: "ip-like name", h: open, host: "127.0.0.1.nip.io:7280", ctype: json, status: 403, code: "forbidden_host"},
		{name: "any address", h: open, host: "0.0.0.0:7280", ctype: json, status: 403, code: "forbidden_host"},
		{name: "lan address", h: open, host: "192.168.1.5:7280", ctype: json, status: 403, code: "forbidden_host"},
		{name: "empty host", h: open, host: "", ctype: json, status: 403, code: "forbidden_host"},

		{name: "own origin", h: open, host: "127.0.0.1:7280", origin: "http://127.0.0.1:7280", ctype: json, status: 200},
		{name: "own origin upper case", h: open, host: "localhost:7280", origin: "HTTP://LocalHost:7280", ctype: json, status: 200},
		{name: "own origin default port", h: open, host: "localhost", origin: "http://localhost:80", ctype: json, status: 200},
		{name: "own origin default port in host", h: open, host: "localhost:80", origin: "http://localhost", ctype: json, status: 200},
		{name: "other site", h: open, host: "127.0.0.1:7280", origin: "https://evil.example", ctype: json, status: 403, code: "forbidden_origin"},
		{name: "other local port", h: open, host: "127.0.0.1:7280", origin: "http://127.0.0.1:8080", ctype: json, status: 403, code: "forbidden_origin"},
		{name: "other local name", h: open, host: "127.0.0.1:7280", origin: "http://localhost:7280", ctype: json, status: 403, code: "forbidden_origin"},
		{name: "other scheme", h: open, host: "127.0.0.1:7280", origin: "https://127.0.0.1:7280", ctype: json, status: 403, code: "forbidden_origin"},
		{name: "null origin", h: open, host: "127.0.0.1:7280", origin: "null", ctype: json, status: 403, code: "forbidden_origin"},
		{name: "origin with path", h: open, host: "127.0.0.1:7280", origin: "http://127.0.0.1:7280/x", ctype: json, status: 403, code: "forbidden_origin"},
		{name: "origin with user", h: open, host: "127.0.0.1:7280", origin: "http://a@127.0.0.1:7280", ctype: json, status: 403, code: "forbidden_origin"},

		{name: "no content type", h: open, host: "127.0.0.1:7280", status: 415, code: "unsupported_media_type"},
		{name: "form (curl -d)", h: open, host: "127.0.0.1:7280", ctype: "application/x-www-form-urlencoded", status: 415, code: "unsupported_media_type"},
		{name: "text/plain", h: open, host: "127.0.0.1:7280", ctype: "text/plain", status: 415, code: "unsupported_media_type"},
		{name: "multipart", h: open, host: "127.0.0.1:7280", ctype: "multipart/form-data; boundary=x", status: 415, code: "unsupported_media_type"},
		{name: "json with charset", h: open, host: "127.0.0.1:7280", ctype: "application/json; charset=UTF-8", status: 200},
		{name: "a +json type", h: open, host: "127.0.0.1:7280", ctype: "application/merge-patch+json", status: 200},

		{name: "token: any host and origin", h: closed, token: true, host: "evil.example", origin: "https://evil.example", ctype: json, status: 200},
		{name: "token: no content type", h: closed, token: true, host: "api.example", status: 200},
		{name: "token: form (curl -d)", h: closed, token: true, host: "api.example", ctype: "application/x-www-form-urlencoded", status: 200},
		{name: "token: text/plain", h: closed, token: true, host: "api.example", ctype: "text/plain", status: 415, code: "unsupported_media_type"},
		{name: "token missing: rebound name", h: closed, host: "evil.example", ctype: json, status: 401, code: "unauthorized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/isOnline", strings.NewReader(`{"client":"c"}`))
			r.RemoteAddr = "127.0.0.1:40000"
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			if tc.token {
				r.Header.Set("Authorization", "Bearer "+testToken)
			}
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.code != "" {
				if code, _ := errorOf(t, w.Body.Bytes()); code != tc.code {
					t.Errorf("code %q, want %q", code, tc.code)
				}
				if got := w.Header().Get("Connection"); got != "close" {
					t.Errorf("Connection %q, want close: a refused request's body is not read", got)
				}
			}
		})
	}
	st := open.Stats()
	if st.AuthFailures[httpapi.AuthHost] != 7 || st.AuthFailures[httpapi.AuthOrigin] != 7 {
		t.Errorf("auth failures %v, want host 7 and origin 7", st.AuthFailures)
	}
}

// TestTokenlessMetricsGuard checks that Require (the node's /metrics)
// applies the same Host and Origin rules: a rebound page cannot read the
// metrics either.
func TestTokenlessMetricsGuard(t *testing.T) {
	h, err := httpapi.New(&fakeAPI{}, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	metrics := h.Require(httpapi.ScopeMetrics, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	for _, tc := range []struct {
		host, origin string
		status       int
	}{
		{"127.0.0.1:7280", "", 200},
		{"evil.example:7280", "", 403},
		{"127.0.0.1:7280", "http://evil.example", 403},
	} {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		w := httptest.NewRecorder()
		metrics.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("host %q origin %q: status %d, want %d", tc.host, tc.origin, w.Code, tc.status)
		}
	}
}

// TestRefusedBeforeBody checks, on a real socket, that a request refused
// by authorization is answered before its body is sent, and that its
// connection is then closed without waiting for the body: net/http alone
// would try to read up to 256 KiB of it first, so a caller trickling a
// body held the connection for as long as it liked.
func TestRefusedBeforeBody(t *testing.T) {
	tokenless, err := httpapi.New(&fakeAPI{}, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	withToken, err := httpapi.New(&fakeAPI{}, httpapi.Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		h      http.Handler
		header string
		status int
	}{
		{"no token sent", withToken, "Content-Type: application/json\r\n", 401},
		{"wrong token", withToken, "Authorization: Bearer nope\r\nContent-Type: application/json\r\n", 401},
		{"tokenless, other origin", tokenless, "Origin: https://evil.example\r\nContent-Type: application/json\r\n", 403},
		{"tokenless, form body", tokenless, "Content-Type: application/x-www-form-urlencoded\r\n", 415},
		{"unknown method", withToken, "Authorization: Bearer " + testToken + "\r\nContent-Type: application/json\r\n", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			path := "/api/sendToAll"
			if tc.status == 404 {
				path = "/api/noSuchMethod"
			}
			// Headers of a 100 KiB body, and not one byte of it.
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: 102400\r\n\r\n",
				path, srv.Listener.Addr(), tc.header)
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(5 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer before the body was sent: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("status %d (want %d), close %v (want true)", resp.StatusCode, tc.status, resp.Close)
			}
			// The server closes: EOF, well before the 5 s bound (it
			// waits up to 500 ms for our ACK before the final close).
			if n, err := br.Read(make([]byte, 1)); err == nil {
				t.Fatalf("read %d more bytes, want the connection closed", n)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after %v", time.Since(start))
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answered and closed after %v", d)
			}
		})
	}
}
