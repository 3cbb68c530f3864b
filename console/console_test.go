package console_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatework/gatework/console"
)

func serve(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestRoutes(t *testing.T) {
	withChat, err := console.New(console.Config{Chat: &console.ChatConfig{Port: 7272, Path: "/ws"}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := console.New(console.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		h      http.Handler
		method string
		path   string
		status int
		typ    string
		body   string
	}{
		{"root", plain, "GET", "/", 200, "text/html; charset=utf-8", "<title>gatework console</title>"},
		{"console", plain, "GET", "/console", 200, "text/html; charset=utf-8", "/console/console.js"},
		{"script", plain, "GET", "/console/console.js", 200, "text/javascript; charset=utf-8", "'getStats'"},
		{"style", plain, "GET", "/console/console.css", 200, "text/css; charset=utf-8", "body"},
		{"head", plain, "HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"post", plain, "POST", "/", 405, "", ""},
		{"unknown", plain, "GET", "/console/nope.js", 404, "", ""},
		{"no chat page", plain, "GET", "/chat", 404, "", ""},
		{"chat page", withChat, "GET", "/chat", 200, "text/html; charset=utf-8", `<meta name="gatework-ws-port" content="7272">`},
		{"chat path", withChat, "GET", "/chat", 200, "text/html; charset=utf-8", `<meta name="gatework-ws-path" content="/ws">`},
		{"chat script", withChat, "GET", "/chat/chat.js", 200, "text/javascript; charset=utf-8", "/join "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, tc.h, tc.method, tc.path)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			hd := w.Header()
			csp := hd.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("CSP %q allows unsafe sources", csp)
			}
			if hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("X-Frame-Options") != "DENY" {
				t.Errorf("headers %v", hd)
			}
			if tc.status != 200 {
				return
			}
			if got := hd.Get("Content-Type"); got != tc.typ {
				t.Errorf("Content-Type %q, want %q", got, tc.typ)
			}
			if !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("body lacks %q", tc.body)
			}
		})
	}
}

// TestChatPageEscapes checks that the WebSocket path lands in the page as
// an attribute value, escaped.
func TestChatPageEscapes(t *testing.T) {
	h, err := console.New(console.Config{Chat: &console.ChatConfig{Port: 1, Path: `/a"><script>x</script>`, TLS: true}})
	if err != nil {
		t.Fatal(err)
	}
	body := serve(t, h, "GET", "/chat").Body.String()
	if strings.Contains(body, "<script>x") {
		t.Errorf("path not escaped:\n%s", body)
	}
	if !strings.Contains(body, `content="wss"`) {
		t.Error("TLS listener: page does not dial wss")
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []console.ChatConfig{{Port: 0}, {Port: 70000}, {Port: 80, Path: "ws"}} {
		if _, err := console.New(console.Config{Chat: &c}); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
}

// TestAssetsSelfContained checks the pages against what their CSP
// enforces and what the console promises: no inline script or event
// handler attribute, no inline style, nothing loaded from another origin.
func TestAssetsSelfContained(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	handlerAttr := regexp.MustCompile(`\son[a-z]+\s*=`)
	remote := regexp.MustCompile(`(?i)(?:src|href)\s*=\s*"(?:https?:)?//|url\(\s*['"]?(?:https?:)?//|import\s`)
	err := fs.WalkDir(os.DirFS("assets"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(filepath.Join("assets", p))
		if err != nil {
			return err
		}
		s := string(b)
		if strings.HasSuffix(p, ".html") {
			if inlineScript.MatchString(s) {
				t.Errorf("%s has an inline script", p)
			}
			if handlerAttr.MatchString(s) {
				t.Errorf("%s has an inline event handler", p)
			}
			if strings.Contains(s, "style=") || strings.Contains(s, "<style") {
				t.Errorf("%s has an inline style", p)
			}
		}
		if loc := remote.FindStringIndex(s); loc != nil {
			t.Errorf("%s loads something from elsewhere: %q", p, s[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
