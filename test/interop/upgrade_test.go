package interop

import (
	"testing"
)

// TestUpgradeRefusal runs upgrade.mjs against the upgrade_hook listener:
// an upgrade the app rejects in OnWebSocketConnect is answered with a
// plain HTTP error before any 101, as Node's ws ('unexpected-response':
// status 403 or 401 and the body) and headless Chromium see it (the
// page's WebSocket fails without opening; the DevTools protocol reports
// the handshake's HTTP 403); an upgrade it accepts echoes.
func TestUpgradeRefusal(t *testing.T) {
	requireNode(t, "ws", "puppeteer-core")
	require(t, fileExists(chromiumPath()), "chromium ("+chromiumPath()+")")
	n := startNode(t)
	res := runScript(t, "upgrade.mjs", []string{
		"WS_URL=ws://" + n.Addr("hook").String() + "/",
		"CHROMIUM=" + chromiumPath(),
		"PROFILE=" + t.TempDir(),
	}, func() error { return nil })
	t.Logf("client: %s", res.Client)
	assertChecks(t, res, []string{
		"ws: denied upgrade answered HTTP 403 with the body",
		"ws: denied upgrade answered HTTP 401",
		"ws: accepted upgrade echoes",
		"chromium: denied WebSocket fails without opening (error, close 1006)",
		"chromium: DevTools sees HTTP 403 for the handshake, not a close code",
		"chromium: accepted WebSocket echoes",
	})
	if got := n.Gateway().Stats().Refused["upgrade_rejected"]; got != 3 {
		t.Errorf("Refused[upgrade_rejected] = %d, want 3 (two ws, one chromium)", got)
	}
}
