package conformance

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestHandshake sends raw opening handshakes (RFC 6455 §4.1, §4.2) and
// checks the status and headers of the answer; a 101 is then used for an
// echo to show that the connection really is a WebSocket.
func TestHandshake(t *testing.T) {
	t.Parallel()
	// key is a valid Sec-WebSocket-Key; "{key}" in a request is replaced by it.
	type hsCase struct {
		name   string
		req    string // raw request; "{host}" and "{key}" are replaced
		status []int  // acceptable status codes
		check  func(t *testing.T, resp *http.Response)
		skip   string
	}
	valid := func(extra string) string {
		return upgradeRequest("{host}", "{key}", extra)
	}
	noExtensions := func(t *testing.T, resp *http.Response) {
		if v := resp.Header.Values("Sec-WebSocket-Extensions"); len(v) > 0 {
			t.Errorf("Sec-WebSocket-Extensions %q: no extension is configured, none may be accepted", v)
		}
	}
	noProtocol := func(t *testing.T, resp *http.Response) {
		if v := resp.Header.Values("Sec-WebSocket-Protocol"); len(v) > 0 {
			t.Errorf("Sec-WebSocket-Protocol %q: no subprotocol is configured, the header must be absent (§4.2.2)", v)
		}
	}
	versionAdvertised := func(t *testing.T, resp *http.Response) {
		if !headerHasToken(resp.Header, "Sec-WebSocket-Version", "13") {
			t.Errorf("Sec-WebSocket-Version %q, want 13 advertised (§4.2.2)", resp.Header.Values("Sec-WebSocket-Version"))
		}
	}
	rejected := []int{400, 426}
	cases := []hsCase{
		{name: "valid", req: valid(""), status: []int{101}, check: func(t *testing.T, resp *http.Response) {
			noExtensions(t, resp)
			noProtocol(t, resp)
		}},
		{name: "valid/subprotocol offered, none configured", req: valid("Sec-WebSocket-Protocol: chat, superchat\r\n"),
			status: []int{101}, check: noProtocol},
		{name: "valid/permessage-deflate offered, not configured", req: valid("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
			status: []int{101}, check: noExtensions},
		{name: "valid/header names in lower case, Connection with keep-alive", status: []int{101},
			req: "GET /chat?x=1 HTTP/1.1\r\nhost: {host}\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n" +
				"sec-websocket-key: {key}\r\nsec-websocket-version: 13\r\norigin: http://example.test\r\n\r\n"},
		{name: "missing Sec-WebSocket-Key", status: []int{400},
			req: "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"},
		{name: "Sec-WebSocket-Key not 16 bytes in base64", status: []int{400}, req: strings.Replace(valid(""), "{key}", "c2hvcnQ=", 1)},
		{name: "wrong version 8", status: rejected, check: versionAdvertised,
			req: strings.Replace(valid(""), "Version: 13", "Version: 8", 1)},
		{name: "missing version", status: rejected,
			req: strings.Replace(valid(""), "Sec-WebSocket-Version: 13\r\n", "", 1)},
		{name: "POST", status: []int{400, 405}, req: strings.Replace(valid(""), "GET ", "POST ", 1)},
		{name: "missing Upgrade header", status: []int{400, 426},
			req: strings.Replace(valid(""), "Upgrade: websocket\r\n", "", 1)},
		{name: "Upgrade is not websocket", status: []int{400, 426},
			req: strings.Replace(valid(""), "Upgrade: websocket", "Upgrade: h2c", 1)},
		{name: "Connection without upgrade", status: []int{400, 426},
			req: strings.Replace(valid(""), "Connection: Upgrade", "Connection: keep-alive", 1)},
		{name: "HTTP/1.0", status: []int{400, 426, 505}, req: strings.Replace(valid(""), "HTTP/1.1", "HTTP/1.0", 1)},
		{name: "missing Host", status: []int{400}, req: strings.Replace(valid(""), "Host: {host}\r\n", "", 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			c, err := dialRaw(wsAddr, deadline(t))
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			key := newKey()
			req := strings.NewReplacer("{host}", wsAddr, "{key}", key).Replace(tc.req)
			resp, err := c.roundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(tc.status, resp.StatusCode) {
				t.Fatalf("status %s, want one of %v", resp.Status, tc.status)
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				return
			}
			if err := checkUpgrade(resp, key); err != nil {
				t.Fatal(err)
			}
			if err := probeEcho(c, "after "+tc.name); err != nil {
				t.Fatal(err)
			}
			if err := closeCleanly(c); err != nil {
				t.Fatal(err)
			}
		})
	}
}
