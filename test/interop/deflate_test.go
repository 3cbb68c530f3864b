package interop

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/node"
)

// bigJSON is the broadcast of the compression tests: n bytes of JSON rows.
func bigJSON(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; b.Len() < n-40; i++ {
		fmt.Fprintf(&b, `{"symbol":"SYM%d","price":%d.%02d},`, i%50, 100+i%7, i%100)
	}
	s := b.String()
	return s[:len(s)-1] + strings.Repeat(" ", n-len(s)) + "]"
}

// broadcast sends msg to everyone through the node's HTTP API.
func broadcast(n *node.Node, msg string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return postAPI(ctx, n, "sendToAll", map[string]any{"message": msg})
	}
}

// checkCompressedOut checks from the gateway's counters that what it sent
// went out compressed: the bytes written to sockets (frames) are under a
// third of the message bytes it received and echoed.
func checkCompressedOut(t *testing.T, n *node.Node) {
	t.Helper()
	st := n.Gateway().Stats()
	t.Logf("gateway: %d message bytes in, %d socket bytes out", st.BytesIn, st.BytesOut)
	if st.BytesIn < 100_000 || st.BytesOut*3 > st.BytesIn {
		t.Errorf("echoes not compressed: %d message bytes in, %d socket bytes out", st.BytesIn, st.BytesOut)
	}
}

// TestNodeWSDeflate runs ws_deflate.mjs (Node's ws with permessage-deflate,
// compressing every message) against the compression listener: the
// extension is negotiated, compressed messages are echoed byte-exact both
// ways, a broadcast from the HTTP API arrives, and the answers came
// compressed (seen by the client's socket and the gateway's counters).
func TestNodeWSDeflate(t *testing.T) {
	requireNode(t, "ws")
	n := startNode(t)
	big := bigJSON(8000)
	res := runScript(t, "ws_deflate.mjs", []string{
		"WS_URL=ws://" + n.Addr("wsz").String() + "/",
		"BIG=" + big,
	}, broadcast(n, big))
	t.Logf("client: %s", res.Client)
	assertChecks(t, res, []string{
		"connect",
		"permessage-deflate negotiated",
		"compressed text echoed byte-exact",
		"compressed binary echoed byte-exact",
		"the server's messages arrive compressed",
		"compressed broadcast from the HTTP API",
		"client close 1000",
	})
	checkCompressedOut(t, n)
}

// TestBrowserDeflate loads deflate.html in headless Chromium, whose
// WebSocket offers permessage-deflate by itself: negotiated, compressed
// echoes byte-exact, a broadcast from the HTTP API, and answers sent
// compressed (the gateway's counters).
func TestBrowserDeflate(t *testing.T) {
	requireNode(t, "puppeteer-core")
	require(t, fileExists(chromiumPath()), "chromium ("+chromiumPath()+")")
	n := startNode(t)
	page, err := os.ReadFile("deflate.html")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(page)
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	big := bigJSON(8000)
	q := url.Values{"ws": {"ws://" + n.Addr("wsz").String() + "/"}, "big": {strconv.Itoa(len(big))}}
	res := runScript(t, "browser.mjs", []string{
		"PAGE_URL=" + srv.URL + "/deflate?" + q.Encode(),
		"CHROMIUM=" + chromiumPath(),
		"PROFILE=" + t.TempDir(),
	}, broadcast(n, big))
	t.Logf("client: %s", res.Client)
	assertChecks(t, res, []string{
		"connect",
		"permessage-deflate negotiated",
		"compressed text echoed byte-exact",
		"compressed binary echoed byte-exact",
		"compressed broadcast from the HTTP API",
		"client close 1000",
	})
	checkCompressedOut(t, n)
}
