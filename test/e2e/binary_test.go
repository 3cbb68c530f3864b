package e2e

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatework/gatework/test/e2e/testapp"
)

// binaryPayloads are messages that a careless implementation would trim,
// cut or re-encode. Those that contain "\n" cannot travel on a TCP
// listener with line framing.
func binaryPayloads() []struct {
	name string
	data []byte
} {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	random[0] = 0xff // not a command, not UTF-8
	randomNoLF := bytes.ReplaceAll(random, []byte("\n"), []byte("\r"))
	return []struct {
		name string
		data []byte
	}{
		{"trailing NUL", []byte("abc\x00")},
		{"only NULs", []byte("\x00\x00\x00")},
		{"spaces", []byte("  a  b  ")},
		{"only spaces", []byte("   ")},
		{"tabs", []byte("\ta\tb\t")},
		{"CR", []byte("a\rb\r")},
		{"CR LF", []byte("a\r\nb\n\r\n")},
		{"LF only", []byte("\n")},
		{"invalid UTF-8", []byte("\xff\xfe\x00abc\xc3")},
		{"truncated UTF-8 rune", []byte("caf\xc3")},
		{"UTF-8 text", []byte("héllo wörld ✓ 🎉")},
		{"empty", []byte{}},
		{"64 KiB text", []byte(strings.Repeat("0123456789abcdef", 4<<10))},
		{"64 KiB random", random},
		{"64 KiB random without LF", randomNoLF},
	}
}

// TestBinarySafety sends awkward payloads every way there is: from the
// client to the worker and back (echo), from the worker (Context.Send), and
// through the HTTP API (message_base64, message, and the Go client). On
// WebSocket everything arrives byte for byte, as a text frame exactly when
// it is valid UTF-8 and was not sent as binary; on TCP with line framing
// everything arrives except payloads holding the delimiter.
func TestBinarySafety(t *testing.T) {
	for _, mode := range []string{"inproc", "process"} {
		for _, proto := range []string{"ws", "tcp"} {
			t.Run(mode+"/"+proto, func(t *testing.T) {
				cc := clusterConfig{}
				if mode == "inproc" {
					cc.app = &testapp.Config{}
				} else {
					cc.processes = true
				}
				cl := startCluster(t, cc)
				if mode == "process" {
					cl.startWorker(t)
				}
				c := cl.dial(t, proto)
				c.who()
				ctx := ctxFor(t, 50*time.Second)
				a := cl.n.API()
				for _, p := range binaryPayloads() {
					if proto == "tcp" && bytes.Contains(p.data, []byte("\n")) {
						continue
					}
					valid := utf8.Valid(p.data)
					ways := []struct {
						name       string
						send       func() error
						wantBinary bool
					}{
						{"client echo", func() error { return c.write(p.data, false) }, !valid},
						{"worker Send", func() error {
							return c.write([]byte("/b64 "+base64.StdEncoding.EncodeToString(p.data)), false)
						}, !valid},
						{"http sendToClient message_base64", func() error {
							return postOK(t, cl, "sendToClient", map[string]any{"client": c.id, "message_base64": base64.StdEncoding.EncodeToString(p.data)})
						}, !valid},
						{"http sendToAll message_base64", func() error {
							return postOK(t, cl, "sendToAll", map[string]any{"message_base64": base64.StdEncoding.EncodeToString(p.data)})
						}, !valid},
						{"go SendToClient", func() error { return a.SendToClient(ctx, c.id, p.data) }, !valid},
					}
					if valid {
						ways = append(ways, struct {
							name       string
							send       func() error
							wantBinary bool
						}{"http sendToClient message", func() error {
							return postOK(t, cl, "sendToClient", map[string]any{"client": c.id, "message": string(p.data)})
						}, false})
					}
					if proto == "ws" {
						ways = append(ways, struct {
							name       string
							send       func() error
							wantBinary bool
						}{"client echo of a binary frame", func() error { return c.write(p.data, true) }, true})
					}
					for _, w := range ways {
						t.Run(p.name+"/"+w.name, func(t *testing.T) {
							if err := w.send(); err != nil {
								t.Fatalf("send: %v", err)
							}
							f, err := c.recv(recvTimeout)
							if err != nil || f.kind != kindMessage {
								t.Fatalf("got %v, %v; want the message back", f, err)
							}
							if !bytes.Equal(f.data, p.data) {
								t.Fatalf("got %d bytes %q, want %d bytes %q", len(f.data), short(string(f.data)), len(p.data), short(string(p.data)))
							}
							if proto == "ws" && f.binary != w.wantBinary {
								t.Fatalf("binary frame %v, want %v", f.binary, w.wantBinary)
							}
						})
						if t.Failed() {
							return
						}
					}
				}
			})
		}
	}
}

// TestWebSocketEmptyMessage: an empty text or binary WebSocket message
// from a client is an event like any other.
func TestWebSocketEmptyMessage(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	c := cl.dial(t, "ws")
	c.who()
	for _, binary := range []bool{false, true} {
		if err := c.write(nil, binary); err != nil {
			t.Fatal(err)
		}
		if err := c.write([]byte("after"), binary); err != nil {
			t.Fatal(err)
		}
		f, err := c.recv(recvTimeout)
		if err != nil || f.kind != kindMessage || len(f.data) != 0 || f.binary != binary {
			t.Fatalf("binary=%v: got %v, %v; want the empty message echoed", binary, f, err)
		}
		c.expect("after")
	}
}

// postOK posts params to method (no token) and wants 200 {"result":null}.
func postOK(t *testing.T, cl *cluster, method string, params map[string]any) error {
	rep, err := cl.post(ctxFor(t, 15*time.Second), method, cl.token, params)
	if err != nil {
		return err
	}
	if rep.Status != http.StatusOK || strings.TrimSpace(string(rep.Body)) != `{"result":null}` {
		return &apiError{Status: rep.Status, Message: string(rep.Body)}
	}
	return nil
}
