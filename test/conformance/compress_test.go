package conformance

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Compression cases (RFC 7692), like Autobahn's 12.x (compressed messages
// of many sizes, whole and fragmented) and 13.x (the same under different
// offers), plus the errors: RSV1 on control frames, on a continuation, or
// without the extension; malformed deflate data; a message that inflates
// past max_message. Frames are compressed here with the standard library,
// an implementation other than the gateway's.

// zMinSize is the compression listener's min_size: shorter messages come
// back uncompressed.
const zMinSize = 64

// zOffer is the ordinary offer, as browsers make it.
const zOffer = "permessage-deflate; client_max_window_bits"

// deflateTail ends every sync flush; RFC 7692 §7.2.1 removes it.
var deflateTail = []byte{0, 0, 0xff, 0xff}

// deflate compresses msg as one permessage-deflate message.
func deflate(msg []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	_, _ = w.Write(msg)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), deflateTail)
}

// inflate reverses deflate (RFC 7692 §7.2.2).
func inflate(z []byte) ([]byte, error) {
	out, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader(deflateTail))))
	if err == io.ErrUnexpectedEOF {
		err = nil // the stream ends with the flush, without a final block
	}
	return out, err
}

// ztext and zbin are compressed messages in one frame.
func ztext(s string) frame { return text("").z(s) }
func zbin(b []byte) frame  { return binf(nil).z(string(b)) }

// z returns f carrying msg compressed, RSV1 set.
func (f frame) z(msg string) frame {
	f.payload = deflate([]byte(msg))
	f.rsv = 0x40
	return f
}

// zfrags returns msg compressed and cut into fragments of size bytes:
// RSV1 on the first only (RFC 7692 §6.1).
func zfrags(op byte, msg []byte, size int) []frame {
	z := deflate(msg)
	var out []frame
	for off := 0; off < len(z) || off == 0; off += size {
		f := frame{op: opCont, payload: z[off:min(off+size, len(z))], notFin: true}
		if off == 0 {
			f.op, f.rsv = op, 0x40
		}
		out = append(out, f)
	}
	out[len(out)-1].notFin = false
	return out
}

// echoed is the frame the echo app answers msg with on the compression
// listener: compressed when at least zMinSize bytes.
func echoed(op byte, msg []byte) frame {
	f := frame{op: op, payload: msg}
	if len(msg) >= zMinSize {
		f.rsv = 0x40
	}
	return f
}

// dialCase connects for tc: to the compression listener with tc.offer,
// checking that the answer accepts it, or plainly.
func dialCase(tc wsCase, deadline time.Time) (*client, error) {
	if tc.offer == "" {
		return dialWS(wsAddr, deadline)
	}
	c, err := dialRaw(wszAddr, deadline)
	if err != nil {
		return nil, err
	}
	key := newKey()
	resp, err := c.roundTrip(upgradeRequest(wszAddr, key, "Sec-WebSocket-Extensions: "+tc.offer+"\r\n"))
	if err == nil {
		err = checkUpgrade(resp, key)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if !strings.HasPrefix(ext, "permessage-deflate") {
		c.close()
		return nil, fmt.Errorf("offer %q not accepted: Sec-WebSocket-Extensions %q", tc.offer, ext)
	}
	c.deflate = true
	return c, nil
}

// TestCompression runs the compression cases.
func TestCompression(t *testing.T) {
	t.Parallel()
	var cases []wsCase
	// 12.x: compressed messages of growing sizes, text and binary, in one
	// frame and in fragments.
	for _, n := range []int{16, 64, 256, 1024, 4096, 32768, 65536, 131072} {
		s := strings.Repeat(`{"k":"v","n":12345}`, n/19+1)[:n]
		b := pattern(n)
		cases = append(cases,
			wsCase{name: "12 text " + strconv.Itoa(n), offer: zOffer, send: sends(enc(ztext(s))), want: []frame{echoed(opText, []byte(s))}},
			wsCase{name: "12 binary " + strconv.Itoa(n), offer: zOffer, send: sends(enc(zbin(b))), want: []frame{echoed(opBinary, b)}},
			wsCase{name: "12 text " + strconv.Itoa(n) + " in fragments of 64", offer: zOffer, send: sends(enc(zfrags(opText, []byte(s), 64)...)), want: []frame{echoed(opText, []byte(s))}},
		)
	}
	long := strings.Repeat("compressed in 13.x ", 10)
	// 13.x: the same under different offers.
	for _, offer := range []string{
		"permessage-deflate",
		"permessage-deflate; client_no_context_takeover",
		"permessage-deflate; server_no_context_takeover",
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		"permessage-deflate; client_max_window_bits=9",
		"permessage-deflate; server_max_window_bits=9",
		"permessage-deflate; server_max_window_bits=15; client_max_window_bits=15",
		"permessage-deflate; x-unknown, permessage-deflate",
	} {
		cases = append(cases, wsCase{name: "13 " + offer, offer: offer,
			send: sends(enc(ztext(long), ztext(long), text(long), ztext("short"))),
			want: []frame{echoed(opText, []byte(long)), echoed(opText, []byte(long)), echoed(opText, []byte(long)), text("short")}})
	}
	cases = append(cases, []wsCase{
		{name: "ping and pong between compressed fragments", offer: zOffer,
			send: sends(enc(append(zfrags(opText, []byte(long), 20)[:1], ping([]byte("p")))...), enc(zfrags(opText, []byte(long), 20)[1:]...)),
			want: []frame{pong([]byte("p")), echoed(opText, []byte(long))}},
		{name: "rsv1 ping", offer: zOffer, send: sends(enc(ping([]byte("p")).withRSV(0x40))), close: 1002},
		{name: "rsv1 pong", offer: zOffer, send: sends(enc(pong(nil).withRSV(0x40))), close: 1002},
		{name: "rsv1 close", offer: zOffer, send: sends(enc(closeFrame(1000, "").withRSV(0x40))), close: 1002},
		{name: "rsv1 on a continuation", offer: zOffer, send: sends(enc(text("ab").more(), cont("cd").withRSV(0x40))), close: 1002},
		{name: "rsv2 with the extension", offer: zOffer, send: sends(enc(ztext(long).withRSV(0x60))), close: 1002},
		{name: "rsv1 without the extension", send: sends(enc(ztext(long))), close: 1002},
		{name: "malformed deflate data", offer: zOffer, send: sends(enc(text("").withRSV(0x40), rawFrame(opText, "\xff\xff\xff\xff").withRSV(0x40))),
			mayFirst: []frame{text("")}, close: 1007},
		{name: "inflates past max_message", offer: zOffer, send: sends(enc(zbin(make([]byte, maxMessage+1)))), close: 1009},
		{name: "compressed invalid UTF-8 text", offer: zOffer, send: sends(enc(text("").z("\xff\xfeab"))), close: 1007},
	}...)
	runCases(t, cases)
}
