package interop

import (
	"strconv"
	"testing"
)

// TestNodeWS runs ws_client.mjs (Node's ws package, 8 clients) against a
// node: byte-exact echo of text and binary, invalid UTF-8 from the server
// as binary, ping/pong, per-client order, sendToGroup and sendToAll from
// the HTTP API, and close codes (1000 both ways, 1009 for oversized
// messages whole and fragmented). Invalid UTF-8 text needs a raw socket
// with ws and is left to test/conformance.
func TestNodeWS(t *testing.T) {
	requireNode(t, "ws")
	n := startNode(t)
	res := runScript(t, "ws_client.mjs", []string{
		"WS_URL=ws://" + n.Addr("ws").String() + "/",
		"MAX_MESSAGE=" + strconv.Itoa(maxMessage),
		"CLIENTS=8",
	}, groupSends(n))
	t.Logf("client: %s", res.Client)
	assertChecks(t, res, []string{
		"connect",
		"bind and join",
		"echo text byte-exact",
		"echo binary byte-exact",
		"invalid UTF-8 from the server arrives as binary",
		"ping answered by identical pong",
		"per-client order of 100 messages",
		"sendToGroup and sendToAll from the HTTP API",
		"client close 1000 is answered with 1000",
		"client close 4001 is answered",
		"server close from the app is 1000",
		"oversized message closes with 1009",
		"oversized fragmented message closes with 1009",
		"max_message exactly is echoed",
	})
}
