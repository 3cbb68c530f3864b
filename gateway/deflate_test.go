package gateway

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// zws is a hand-made WebSocket client, so that tests control every bit
// of a frame (RSV1 included) and see every bit of the answer.
type zws struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	resp *http.Response
}

// dialZWS upgrades with the Sec-WebSocket-Extensions header ext ("" for
// none).
func dialZWS(t *testing.T, addr, ext string) *zws {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if ext != "" {
		req += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return &zws{t: t, c: c, r: r, resp: resp}
}

// send writes one masked frame with first byte b0 (FIN, RSV, opcode).
func (w *zws) send(b0 byte, payload []byte) {
	w.t.Helper()
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	mask := []byte{1, 2, 3, 4}
	f = append(f, mask...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	if _, err := w.c.Write(f); err != nil {
		w.t.Fatal(err)
	}
}

// read returns the next frame's first byte and payload.
func (w *zws) read() (byte, []byte) {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		w.t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(w.r, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(w.r, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.r, p); err != nil {
		w.t.Fatalf("read payload: %v", err)
	}
	return h[0], p
}

// closeCode reads frames until a close frame and returns its code.
func (w *zws) closeCode() int {
	w.t.Helper()
	for {
		b0, p := w.read()
		if b0&0x0f == wsClose {
			if len(p) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// compress deflates msg with the standard library (an implementation other
// than the gateway's), as one permessage-deflate message.
func compress(t *testing.T, msg []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	fw, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = fw.Write(msg)
	_ = fw.Flush()
	return bytes.TrimSuffix(b.Bytes(), deflateTail)
}

// decompress inflates a permessage-deflate message with the standard
// library.
func decompress(t *testing.T, z []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader(deflateTail))))
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatalf("inflate the gateway's message: %v", err)
	}
	return out
}

const offer = "permessage-deflate; client_max_window_bits"

func deflateListener(c Compression) Config {
	c.Enabled = true
	return Config{Listeners: []ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: 64 << 10, Compression: c},
		{Name: "plain", Protocol: "ws", Addr: "127.0.0.1:0"},
	}}
}

// TestDeflateNegotiation: the answer to each offer (server and client no
// context takeover always; the client's window limited when configured
// and offered; the server's window as the client asks; invalid offers
// declined, the next valid one taken; nothing when compression is off).
func TestDeflateNegotiation(t *testing.T) {
	s := startLimited(t, Config{Listeners: []ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0", Compression: Compression{Enabled: true}},
		{Name: "win", Protocol: "ws", Addr: "127.0.0.1:0", Compression: Compression{Enabled: true, ClientMaxWindowBits: 10}},
		{Name: "off", Protocol: "ws", Addr: "127.0.0.1:0"},
	}})
	const base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	for _, tc := range []struct{ listener, offer, want string }{
		{"ws", "permessage-deflate", base},
		{"ws", offer, base},
		{"ws", "permessage-deflate; server_max_window_bits=10", base + "; server_max_window_bits=10"},
		{"ws", "permessage-deflate; x-unknown=1, permessage-deflate", base},
		{"ws", "permessage-deflate; server_max_window_bits=99", ""},
		{"ws", "x-webkit-deflate-frame", ""},
		{"win", offer, base + "; client_max_window_bits=10"},
		{"win", "permessage-deflate; client_max_window_bits=9", base + "; client_max_window_bits=9"},
		{"win", "permessage-deflate", base},
		{"off", offer, ""},
	} {
		w := dialZWS(t, s.Addr(tc.listener).String(), tc.offer)
		got := strings.ReplaceAll(w.resp.Header.Get("Sec-WebSocket-Extensions"), " ", "")
		if want := strings.ReplaceAll(tc.want, " ", ""); got != want {
			t.Errorf("%s, offer %q: answer %q, want %q", tc.listener, tc.offer, got, tc.want)
		}
	}
}

// TestDeflateEcho: compressed messages, single-frame and fragmented, are
// inflated; messages at or over min_size go out compressed (RSV1, once per
// message), shorter ones plain; a server window of 2^9 is respected.
func TestDeflateEcho(t *testing.T) {
	s := startLimited(t, deflateListener(Compression{MinSize: 64}))
	long := []byte(strings.Repeat(`{"symbol":"ABC","price":101.25,"size":300},`, 40))
	for _, ext := range []string{offer, "permessage-deflate; server_max_window_bits=9"} {
		w := dialZWS(t, s.Addr("ws").String(), ext)
		z := compress(t, long)

		w.send(0x80|0x40|wsText, z) // one compressed frame
		b0, p := w.read()
		if b0 != 0x80|0x40|wsText || !bytes.Equal(decompress(t, p), long) {
			t.Fatalf("%s: echo of a compressed message: first byte %#x, %d bytes", ext, b0, len(p))
		}
		if len(p) >= len(long)/4 {
			t.Fatalf("%s: %d bytes compressed to %d", ext, len(long), len(p))
		}

		w.send(0x40|wsText, z[:10]) // fragmented: RSV1 on the first only
		w.send(wsContinuation, z[10:20])
		w.send(0x80|wsContinuation, z[20:])
		if b0, p := w.read(); b0 != 0x80|0x40|wsText || !bytes.Equal(decompress(t, p), long) {
			t.Fatalf("%s: echo of a fragmented compressed message: %#x", ext, b0)
		}

		w.send(0x80|0x40|wsBinary, compress(t, []byte("short"))) // compressed in, short: plain out
		if b0, p := w.read(); b0 != 0x80|wsBinary || string(p) != "short" {
			t.Fatalf("%s: short message: first byte %#x, %q", ext, b0, p)
		}
		w.send(0x80|wsText, long) // plain in, long: compressed out
		if b0, p := w.read(); b0 != 0x80|0x40|wsText || !bytes.Equal(decompress(t, p), long) {
			t.Fatalf("%s: plain long message: first byte %#x", ext, b0)
		}
	}
	// A client that did not negotiate gets plain frames.
	w := dialZWS(t, s.Addr("ws").String(), "")
	w.send(0x80|wsText, long)
	if b0, p := w.read(); b0 != 0x80|wsText || !bytes.Equal(p, long) {
		t.Fatalf("no extension: first byte %#x", b0)
	}
}

// wsContinuation is the continuation opcode.
const wsContinuation = 0x0

// TestDeflateBadInput: each violation gets its close code and nothing
// else breaks: RSV1 without negotiation (1002), a compressed control frame
// (1002), RSV1 on a continuation frame (1002), RSV2 (1002), malformed
// deflate data (1007), a message that inflates past max_message (1009),
// compressed invalid UTF-8 text (1007).
func TestDeflateBadInput(t *testing.T) {
	s := startLimited(t, deflateListener(Compression{}))
	addr := s.Addr("ws").String()
	bomb := compress(t, make([]byte, 1<<20))
	for _, tc := range []struct {
		name   string
		ext    string
		frames [][]byte // first byte, then payload
		code   int
	}{
		{"rsv1 without negotiation", "", [][]byte{{0x80 | 0x40 | wsText}, compress(t, []byte("hi"))}, 1002},
		{"compressed ping", offer, [][]byte{{0x80 | 0x40 | 0x9}, nil}, 1002},
		{"rsv1 on continuation", offer, [][]byte{{0x40 | wsText}, compress(t, []byte("hi"))[:2], {0x80 | 0x40 | wsContinuation}, compress(t, []byte("hi"))[2:]}, 1002},
		{"rsv2", offer, [][]byte{{0x80 | 0x20 | wsText}, []byte("hi")}, 1002},
		{"malformed deflate", offer, [][]byte{{0x80 | 0x40 | wsText}, {0xff, 0xff, 0xff, 0xff}}, 1007},
		{"inflates too large", offer, [][]byte{{0x80 | 0x40 | wsBinary}, bomb}, 1009},
		{"invalid utf-8", offer, [][]byte{{0x80 | 0x40 | wsText}, compress(t, []byte{0xff, 0xfe, 'a'})}, 1007},
	} {
		w := dialZWS(t, addr, tc.ext)
		for i := 0; i < len(tc.frames); i += 2 {
			w.send(tc.frames[i][0], tc.frames[i+1])
		}
		if code := w.closeCode(); code != tc.code {
			t.Errorf("%s: close code %d, want %d", tc.name, code, tc.code)
		}
	}
	// Nothing else broke: a new client is served, compressed.
	c, _, err := (&websocket.Dialer{EnableCompression: true}).Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, strings.Repeat("still served ", 40))
	if n := s.Stats().Closes["protocol_error"]; n != 5 {
		t.Fatalf("protocol_error closes = %d, want 5 (4 × 1002, malformed deflate as 1007)", n)
	}
}

// TestDeflateGorilla: a third-party client (gorilla/websocket, which
// offers no context takeover) exchanges compressed messages both ways.
func TestDeflateGorilla(t *testing.T) {
	s := startLimited(t, deflateListener(Compression{Level: 6}))
	c, resp, err := (&websocket.Dialer{EnableCompression: true}).Dial("ws://"+s.Addr("ws").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("not negotiated: %q", ext)
	}
	for _, n := range []int{0, 10, 200, 5000, 60 << 10} {
		echo(t, c, strings.Repeat("gorilla ", n/8+1)[:n])
	}
}

// TestFanOutCompressesOnce: during a fan-out the connections with the same
// window share one compressed frame; other windows and uncompressed
// connections get theirs.
func TestFanOutCompressesOnce(t *testing.T) {
	l := &listener{cfg: ListenerConfig{Protocol: "ws", MessageType: "auto", Compression: Compression{Enabled: true}.withDefaults()}}
	msg := bytes.Repeat([]byte("fan-out "), 64)
	a, b := &conn{l: l, deflate: 15}, &conn{l: l, deflate: 15}
	small, plain := &conn{l: l, deflate: 10}, &conn{l: l}
	fc := frameCache{msg: msg}
	fa, fb, fs, fp := fc.get(a), fc.get(b), fc.get(small), fc.get(plain)
	if &fa[0] != &fb[0] {
		t.Fatal("two connections with the same window got separately compressed frames")
	}
	if &fs[0] == &fa[0] || &fp[0] == &fa[0] || fp[0]&0x40 != 0 || fa[0]&0x40 == 0 || fs[0]&0x40 == 0 {
		t.Fatal("other windows or plain connections share the compressed frame")
	}
	if len(fc.keys) != 3 {
		t.Fatalf("%d encodings, want 3", len(fc.keys))
	}
}

// TestDeflateWindow: a client's server_max_window_bits is respected: a
// block repeated 1000 bytes apart is not matched with a 512-byte window.
func TestDeflateWindow(t *testing.T) {
	block := make([]byte, 1000)
	x := uint32(1)
	for i := range block {
		x = x*1664525 + 1013904223
		block[i] = byte(x >> 24)
	}
	msg := bytes.Repeat(block, 4)
	for _, tc := range []struct {
		bits     uint8
		min, max int
	}{{15, 0, 1500}, {9, 3500, 1 << 20}} {
		z, err := deflateMessage(msg, 1, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		if len(z) < tc.min || len(z) > tc.max {
			t.Errorf("window 2^%d: %d bytes compressed to %d, want %d to %d", tc.bits, len(msg), len(z), tc.min, tc.max)
		}
		if got := decompress(t, z); !bytes.Equal(got, msg) {
			t.Errorf("window 2^%d: round trip failed", tc.bits)
		}
	}
}
