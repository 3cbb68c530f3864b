package conformance

import (
	"bytes"
	"fmt"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// wsCase is one conformance case: raw bytes sent after a valid handshake,
// the frames the server must answer with, in order, and how the
// connection must end.
type wsCase struct {
	name string
	// send holds the bytes to send; each element is one write.
	send [][]byte
	// chop writes every byte on its own, to exercise partial frames.
	chop bool
	// want are the frames the server must send first (echoes, pongs).
	want []frame
	// mayFirst are frames the server may send before the close frame: a
	// failing connection may or may not deliver the echo of an earlier
	// message (Autobahn counts both as a pass).
	mayFirst []frame
	// close is the close code the server must send next, after which it
	// must close the TCP connection; 0 means the connection stays open
	// (checked by an echo and a clean close handshake).
	close int
	// alsoOK lists other close codes the RFC allows for this case.
	alsoOK []int
	// offer, when set, is the Sec-WebSocket-Extensions offer of the
	// handshake, made to the listener with permessage-deflate: the answer
	// must accept it, received compressed frames are inflated, and a want
	// frame with RSV1 (withRSV(0x40)) must come compressed (one without,
	// uncompressed).
	offer string
	// dev, when set, is a known deviation of the socket engine that the
	// gateway cannot correct: if the case fails exactly as described, it
	// is skipped with the description; if it passes, it passes; any
	// other failure fails.
	dev *deviation
}

// deviation describes how the socket engine (nbio v1.6.12) departs from
// RFC 6455 in one case.
type deviation struct {
	// what names the expected behaviour, the engine's and the reason the
	// gateway cannot change it.
	what string
	// got is a substring of the failure the deviation produces.
	got string
}

// nbioWebSocket is the package whose deviations wsCase.dev describes.
const nbioWebSocket = "github.com/lesismal/nbio/nbhttp/websocket"

// gatewayUsesNbioWebSocket reports whether the gateway's sources import
// nbio's WebSocket package: only then may a case be skipped for one of its
// deviations; otherwise the behaviour is the gateway's own.
var gatewayUsesNbioWebSocket = sync.OnceValue(func() bool {
	files, _ := filepath.Glob(filepath.Join("..", "..", "gateway", "*.go"))
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			continue
		}
		for _, imp := range f.Imports {
			if strings.Trim(imp.Path.Value, "`\"") == nbioWebSocket {
				return true
			}
		}
	}
	return false
})

// open is wsCase.close for a connection that must stay usable.
const open = 0

// sends wraps writes for wsCase.send.
func sends(b ...[]byte) [][]byte { return b }

// runCases runs each case on its own connection, in parallel.
func runCases(t *testing.T, cases []wsCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := runCase(t, tc)
			switch {
			case err == nil:
				if tc.dev != nil {
					t.Logf("known deviation no longer seen, the case passes: %s", tc.dev.what)
				}
			case tc.dev != nil && strings.Contains(err.Error(), tc.dev.got):
				if !gatewayUsesNbioWebSocket() {
					t.Fatalf("%v\n(a known deviation of nbio's WebSocket, which the gateway no longer uses: %s)", err, tc.dev.what)
				}
				t.Skipf("RFC deviation of nbio v1.6.12: %s (got: %v)", tc.dev.what, err)
			default:
				t.Fatal(err)
			}
		})
	}
}

func runCase(t *testing.T, tc wsCase) error {
	c, err := dialCase(tc, deadline(t))
	if err != nil {
		return err
	}
	defer c.close()
	for i, b := range tc.send {
		// The server may close while a failing case is still writing;
		// what it answered is checked below.
		if err := c.write(b, tc.chop); err != nil {
			t.Logf("write %d of %d: %v", i+1, len(tc.send), err)
			break
		}
	}
	for i, want := range tc.want {
		got, err := c.next()
		if err != nil {
			return fmt.Errorf("frame %d of %d: want %v: %s", i+1, len(tc.want), want, describeEnd(err))
		}
		if got.op != want.op || got.notFin || !bytes.Equal(got.payload, want.payload) || (tc.offer != "" && got.rsv != want.rsv) {
			return fmt.Errorf("frame %d of %d: got %s, want %v", i+1, len(tc.want), describeFrame(got), want)
		}
	}
	if tc.close == open {
		if err := probeEcho(c, tc.name); err != nil {
			return err
		}
		return closeCleanly(c)
	}
	return expectClose(c, append([]int{tc.close}, tc.alsoOK...), tc.mayFirst)
}

// expectClose reads the server's close frame, checks its code against
// codes and checks that the server then closes the TCP connection. The
// frames in mayFirst, in that order, may come before the close frame.
func expectClose(c *client, codes []int, mayFirst []frame) error {
	f, err := c.next()
	for err == nil && len(mayFirst) > 0 && f.op != opClose {
		if want := mayFirst[0]; f.op != want.op || !bytes.Equal(f.payload, want.payload) {
			return fmt.Errorf("got %v, want %v or close %s", f, want, codeList(codes))
		}
		mayFirst = mayFirst[1:]
		f, err = c.next()
	}
	if err != nil {
		return fmt.Errorf("want close %s: %s", codeList(codes), describeEnd(err))
	}
	if f.op != opClose {
		return fmt.Errorf("got %v, want close %s", f, codeList(codes))
	}
	code, err := closeCode(f.payload)
	if err != nil {
		return err
	}
	if !slices.Contains(codes, code) {
		return fmt.Errorf("got close %d %q, want close %s", code, reasonOf(f.payload), codeList(codes))
	}
	return c.expectTCPClose()
}

// probeEcho checks that the connection still echoes.
func probeEcho(c *client, label string) error {
	msg := "probe " + label
	if err := c.write(enc(text(msg)), false); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	f, err := c.next()
	if err != nil {
		return fmt.Errorf("probe: the connection should stay open: %s", describeEnd(err))
	}
	if f.op != opText || string(f.payload) != msg {
		return fmt.Errorf("probe: got %s, want text %q; the connection should stay open", describeFrame(f), msg)
	}
	return nil
}

// closeCleanly runs a client-initiated close handshake with 1000: the
// server must answer with close 1000 and close the TCP connection.
func closeCleanly(c *client) error {
	if err := c.write(enc(closeFrame(1000, "bye")), false); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return expectClose(c, []int{1000}, nil)
}

// describeFrame shows a close frame by its code and reason.
func describeFrame(f frame) string {
	if f.op != opClose {
		return f.String()
	}
	code, err := closeCode(f.payload)
	if err != nil {
		return fmt.Sprintf("malformed close %v: %v", f, err)
	}
	return fmt.Sprintf("close %d %q", code, reasonOf(f.payload))
}

func reasonOf(p []byte) string {
	if len(p) < 2 {
		return ""
	}
	return string(p[2:])
}

func codeList(codes []int) string {
	s := make([]string, len(codes))
	for i, c := range codes {
		s[i] = fmt.Sprint(c)
	}
	return strings.Join(s, " or ")
}

// pattern returns n bytes cycling through every byte value.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// stars returns a text payload of n ASCII bytes.
func stars(n int) string { return strings.Repeat("*", n) }
