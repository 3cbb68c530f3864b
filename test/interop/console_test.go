package interop

import (
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/node"
)

// Tokens of TestConsole's node.
const (
	consoleAdminToken = "console-admin-token"
	consoleReadToken  = "console-read-token"
)

// maxScreenshot bounds the console screenshot, which the README shows.
const maxScreenshot = 200 << 10

// TestConsole drives the web console and the chat page in headless
// Chromium against a node running the chat app with API tokens: two chat
// pages talk to each other and see who is online, and reconnect with
// back-off and rejoin their room when the node restarts; the console loads in
// under a second, refuses a wrong token, shows the connection count
// change when a third page connects, sends a message that reaches that
// page, lists the room's group, and force-closes a page that then
// reconnects with back-off and rejoins; with a read-scope token its send
// and admin actions are disabled and the API refuses a send. It writes
// console.png and chat.png to $SCREENSHOT_DIR (the README's
// docs/img/console.png comes from there), or to a temporary directory.
func TestConsole(t *testing.T) {
	requireNode(t, "puppeteer-core")
	require(t, fileExists(chromiumPath()), "chromium ("+chromiumPath()+")")
	n := startChatNode(t, "127.0.0.1:0", "127.0.0.1:0")
	wsAddr, httpAddr := n.Addr("ws").String(), n.HTTPAddr().String()
	shots := os.Getenv("SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	res := runScript(t, "console.mjs", []string{
		"BASE_URL=http://" + httpAddr,
		"CHROMIUM=" + chromiumPath(),
		"PROFILE=" + t.TempDir(),
		"ADMIN_TOKEN=" + consoleAdminToken,
		"READ_TOKEN=" + consoleReadToken,
		"SHOTS=" + shots,
	}, func() error {
		// Restart the node on the same addresses: the chat pages must
		// reconnect by themselves.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			return fmt.Errorf("stopping the node: %w", err)
		}
		startChatNode(t, wsAddr, httpAddr)
		return nil
	})
	t.Logf("client: %s", res.Client)
	assertChecks(t, res, []string{
		"two chat pages join a room",
		"two chat pages chat with each other",
		"the chat page shows who is online",
		"chat pages reconnect and rejoin after the node restarts",
		"console page loads in under 1 s",
		"console login with a wrong token is refused",
		"console shows the connection count",
		"console sees a third page connect",
		"a console send to a client reaches the page",
		"the console lists the group and its members",
		"chat page reconnects after the console force-closes it",
		"screenshots of the console and the chat",
		"a read-scope token cannot send",
		"the token is in neither the URL nor a cookie",
	})
	for _, name := range []string{"console.png", "chat.png"} {
		p := filepath.Join(shots, name)
		f, err := os.Open(p)
		if err != nil {
			t.Errorf("screenshot: %v", err)
			continue
		}
		cfg, err := png.DecodeConfig(f)
		st, _ := f.Stat()
		f.Close()
		if err != nil || cfg.Width < 800 {
			t.Errorf("%s: not a screenshot (%v, %dx%d)", name, err, cfg.Width, cfg.Height)
		}
		if name == "console.png" && st.Size() > maxScreenshot {
			t.Errorf("%s is %d bytes, more than %d", name, st.Size(), maxScreenshot)
		}
		t.Logf("%s: %dx%d, %d bytes", p, cfg.Width, cfg.Height, st.Size())
	}
}

// startChatNode starts a node running the chat app with its page, a
// WebSocket listener on wsAddr and the HTTP API on httpAddr with an admin
// and a read token.
func startChatNode(t *testing.T, wsAddr, httpAddr string) *node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := chat.Handlers()
	n, err := node.Start(ctx, node.Config{
		Logger: testLogger(t),
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{
			Protocol: "ws", Addr: wsAddr, MaxMessage: maxMessage,
		}}},
		HTTP: node.HTTPConfig{Addr: httpAddr, ChatPage: true, Tokens: []httpapi.Token{
			{Name: "admin", Token: consoleAdminToken, Scope: httpapi.ScopeAdmin},
			{Name: "read", Token: consoleReadToken, Scope: httpapi.ScopeRead},
		}},
		Worker: node.WorkerConfig{Handlers: &h, App: "chat"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	return n
}
