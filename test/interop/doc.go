// Package interop runs WebSocket clients that nobody on the project wrote
// against a whole node started in-process: Node's ws package
// (ws_client.mjs, TestNodeWS) and Debian's Chromium driven by
// puppeteer-core (browser.mjs and page.html, TestBrowser; wss.mjs,
// TestBrowserWSS, over TLS; console.mjs, TestConsole). Each script
// prints one JSON result of named checks, which the Go test asserts.
//
// The package has no API. Install the clients once with
//
//	test/interop/setup.sh
//
// (Debian's chromium if /usr/bin/chromium is missing, then npm ci here),
// then run
//
//	go test ./test/interop/
//
// Without node, node_modules or chromium the tests skip, saying what is
// missing; with the CI environment variable set they fail instead.
//
// TestConsole (console.mjs) drives the web console and the chat page of a
// node running the chat app. It writes screenshots, console.png and
// chat.png, to $SCREENSHOT_DIR or a temporary directory; the README's are
// refreshed with
//
//	SCREENSHOT_DIR=$PWD/docs/img go test -run TestConsole ./test/interop/
package interop
