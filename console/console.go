package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed assets
var assets embed.FS

// ChatConfig says where the chat page's WebSocket is: on the host the
// page was loaded from, at Port and Path.
type ChatConfig struct {
	// Port is the WebSocket listener's port; required.
	Port int
	// Path is the listener's upgrade path; "" means "/".
	Path string
	// TLS, when set, makes the page dial wss:// instead of ws://.
	TLS bool
}

// Config configures a Handler. The zero value serves the console only.
type Config struct {
	// Chat, when set, also serves the chat page at /chat. nil means no
	// chat page (/chat is 404).
	Chat *ChatConfig
}

// Handler serves:
//
//	GET /, /console        the console page
//	GET /console/<file>    its script and style sheet
//	GET /chat              the chat page (with Config.Chat only)
//	GET /chat/<file>       its script
//
// Anything else is 404; methods other than GET and HEAD are 405. Every
// answer carries a Content-Security-Policy that allows only this origin's
// scripts and styles (no inline script), frame-ancestors 'none',
// X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer. The
// pages need no token to load: what they show and do goes through the
// HTTP API and its tokens. A Handler is safe for concurrent use and keeps
// nothing per request.
type Handler struct {
	files map[string]file // by URL path
}

// file is one answer: its body and media type.
type file struct {
	body []byte
	typ  string
	csp  string
}

// Content-Security-Policy of the pages. The console reaches only its own
// origin; the chat page also dials the WebSocket listener, on another
// port of the same host (CSP's 'self' does not cover another port).
const (
	cspConsole = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	cspChat = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

// New returns a Handler. It fails if cfg.Chat has no valid port or a
// path that does not start with "/".
func New(cfg Config) (*Handler, error) {
	h := &Handler{files: map[string]file{}}
	add := func(urlPath, name, csp string) error {
		b, err := fs.ReadFile(assets, "assets/"+name)
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		h.files[urlPath] = file{body: b, typ: mediaType(name), csp: csp}
		return nil
	}
	for _, f := range []struct{ url, name string }{
		{"/", "index.html"},
		{"/console", "index.html"},
		{"/console/", "index.html"},
		{"/console/console.js", "console.js"},
		{"/console/console.css", "console.css"},
	} {
		if err := add(f.url, f.name, cspConsole); err != nil {
			return nil, err
		}
	}
	if c := cfg.Chat; c != nil {
		if c.Port <= 0 || c.Port > 65535 {
			return nil, fmt.Errorf("console: chat: invalid WebSocket port %d", c.Port)
		}
		p := c.Path
		if p == "" {
			p = "/"
		}
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("console: chat: WebSocket path %q does not start with /", c.Path)
		}
		page, err := chatPage(c.Port, p, c.TLS)
		if err != nil {
			return nil, err
		}
		h.files["/chat"] = file{body: page, typ: "text/html; charset=utf-8", csp: cspChat}
		h.files["/chat/"] = h.files["/chat"]
		if err := add("/chat/chat.js", "chat.js", cspChat); err != nil {
			return nil, err
		}
		if err := add("/chat/chat.css", "chat.css", cspChat); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// chatPage fills in where the page's WebSocket is, in meta elements that
// chat.js reads (no inline script).
func chatPage(port int, wsPath string, tls bool) ([]byte, error) {
	src, err := fs.ReadFile(assets, "assets/chat.html")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	t, err := template.New("chat").Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("console: chat page: %w", err)
	}
	scheme := "ws"
	if tls {
		scheme = "wss"
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]string{"Port": strconv.Itoa(port), "Path": wsPath, "Scheme": scheme})
	if err != nil {
		return nil, fmt.Errorf("console: chat page: %w", err)
	}
	return b.Bytes(), nil
}

func mediaType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	panic(errors.New("console: no media type for " + name))
}

// ServeHTTP answers one request; see Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	f, ok := h.files[r.URL.Path]
	if !ok {
		hd.Set("Content-Security-Policy", cspConsole)
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	hd.Set("Content-Security-Policy", f.csp)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd.Set("Content-Type", f.typ)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Length", strconv.Itoa(len(f.body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(f.body) // the caller is gone if this fails
}
