package interop

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"testing"
)

// chromiumPath is Debian's chromium, or $CHROMIUM.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// TestBrowser loads page.html in headless Chromium (puppeteer-core) and
// checks the browser's own WebSocket against a node: byte-exact text echo,
// binary echo via ArrayBuffer, invalid UTF-8 from the server as binary,
// order, sendToGroup and sendToAll from the HTTP API, close 1000 both
// ways and 1009 for an oversized message.
func TestBrowser(t *testing.T) {
	requireNode(t, "puppeteer-core")
	require(t, fileExists(chromiumPath()), "chromium ("+chromiumPath()+")")
	n := startNode(t)
	page, err := os.ReadFile("page.html")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(page)
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	q := url.Values{
		"ws":  {"ws://" + n.Addr("ws").String() + "/"},
		"max": {strconv.Itoa(maxMessage)},
	}
	res := runScript(t, "browser.mjs", []string{
		"PAGE_URL=" + srv.URL + "/?" + q.Encode(),
		"CHROMIUM=" + chromiumPath(),
		"PROFILE=" + t.TempDir(),
	}, groupSends(n))
	t.Logf("client: %s", res.Client)
	assertChecks(t, res, []string{
		"connect",
		"bind and join",
		"echo text byte-exact",
		"echo binary via ArrayBuffer",
		"invalid UTF-8 from the server arrives as binary",
		"per-client order of 100 messages",
		"sendToGroup and sendToAll from the HTTP API",
		"server close from the app is 1000",
		"oversized message closes with 1009",
		"client close 1000",
	})
}
