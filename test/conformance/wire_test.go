package conformance

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// frame is one WebSocket frame. The zero value of every option is the
// ordinary case: final, masked (client frames), reserved bits clear.
type frame struct {
	op      byte
	payload []byte
	notFin  bool // FIN clear: more fragments follow
	noMask  bool // send without a masking key (a protocol error from a client)
	rsv     byte // reserved bits as they sit in the first byte: 0x40, 0x20, 0x10
}

// more returns f with FIN clear.
func (f frame) more() frame { f.notFin = true; return f }

// unmasked returns f sent without a masking key.
func (f frame) unmasked() frame { f.noMask = true; return f }

// withRSV returns f with the reserved bits bits (0x70 mask) set.
func (f frame) withRSV(bits byte) frame { f.rsv = bits; return f }

func text(s string) frame              { return frame{op: opText, payload: []byte(s)} }
func binf(b []byte) frame              { return frame{op: opBinary, payload: b} }
func cont(s string) frame              { return frame{op: opCont, payload: []byte(s)} }
func ping(b []byte) frame              { return frame{op: opPing, payload: b} }
func pong(b []byte) frame              { return frame{op: opPong, payload: b} }
func rawFrame(op byte, s string) frame { return frame{op: op, payload: []byte(s)} }

// closeFrame returns a close frame with a status code and reason.
func closeFrame(code uint16, reason string) frame {
	p := binary.BigEndian.AppendUint16(nil, code)
	return frame{op: opClose, payload: append(p, reason...)}
}

// encode appends f as a client would send it: masked with a random key
// unless f.noMask, with the shortest length encoding.
func (f frame) encode(dst []byte) []byte {
	b0 := f.op&0x0F | f.rsv&0x70
	if !f.notFin {
		b0 |= 0x80
	}
	var b1 byte
	if !f.noMask {
		b1 = 0x80
	}
	n := len(f.payload)
	switch {
	case n < 126:
		dst = append(dst, b0, b1|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if f.noMask {
		return append(dst, f.payload...)
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	dst = append(dst, key[:]...)
	for i, c := range f.payload {
		dst = append(dst, c^key[i&3])
	}
	return dst
}

// enc encodes frames back to back, as one write.
func enc(frames ...frame) []byte {
	var b []byte
	for _, f := range frames {
		b = f.encode(b)
	}
	return b
}

// String describes f for failure messages, with a short payload excerpt.
func (f frame) String() string {
	p := f.payload
	suffix := ""
	if len(p) > 32 {
		p, suffix = p[:32], "…"
	}
	return fmt.Sprintf("{op=%#x fin=%v len=%d payload=%q%s}", f.op, !f.notFin, len(f.payload), p, suffix)
}

// readFrame reads one server frame and checks what RFC 6455 requires of
// every server frame: no mask (§5.1), no reserved bit without an
// extension (§5.2), control frames final and at most 125 bytes (§5.5),
// a known opcode.
// With deflate (permessage-deflate negotiated) RSV1 may mark a data frame
// compressed (RFC 7692 §6), never a control frame.
func readFrame(r *bufio.Reader, deflate bool) (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{op: h[0] & 0x0F, notFin: h[0]&0x80 == 0, rsv: h[0] & 0x70}
	if h[1]&0x80 != 0 {
		return f, errors.New("server frame is masked (RFC 6455 §5.1 forbids it)")
	}
	switch {
	case f.rsv == 0:
	case deflate && f.rsv == 0x40 && (f.op == opText || f.op == opBinary):
	default:
		return f, fmt.Errorf("server frame op=%#x has reserved bits %#x set", f.op, f.rsv)
	}
	var n uint64
	switch l := h[1] & 0x7F; l {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
		if n < 126 {
			return f, fmt.Errorf("server frame length %d not in the shortest form", n)
		}
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(ext[:])
		if n <= 0xFFFF || n>>63 != 0 {
			return f, fmt.Errorf("server frame length %d not in the shortest form", n)
		}
	default:
		n = uint64(l)
	}
	switch f.op {
	case opCont, opText, opBinary:
	case opClose, opPing, opPong:
		if f.notFin || n > 125 {
			return f, fmt.Errorf("server control frame op=%#x fin=%v len=%d breaks RFC 6455 §5.5", f.op, !f.notFin, n)
		}
	default:
		return f, fmt.Errorf("server frame has reserved opcode %#x", f.op)
	}
	if n > 64<<20 {
		return f, fmt.Errorf("server frame of %d bytes is beyond any limit of this test", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	return f, nil
}

// closeCode returns the status code of a close frame's payload and checks
// the payload's form (RFC 6455 §5.5.1): empty, or a code and UTF-8 text.
func closeCode(p []byte) (int, error) {
	switch {
	case len(p) == 0:
		return 1005, nil // no status code present
	case len(p) == 1:
		return 0, errors.New("server close frame has a 1-byte payload")
	case !utf8.Valid(p[2:]):
		return 0, fmt.Errorf("server close reason %q is not UTF-8", p[2:])
	}
	return int(binary.BigEndian.Uint16(p)), nil
}

// wsKeyGUID is the handshake's magic GUID (RFC 6455 §1.3).
const wsKeyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey returns the Sec-WebSocket-Accept value for key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsKeyGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// newKey returns a fresh Sec-WebSocket-Key: 16 random bytes in base64.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// client is a raw WebSocket client connection.
type client struct {
	nc      net.Conn
	br      *bufio.Reader
	deflate bool // permessage-deflate negotiated: next inflates RSV1 frames
}

// dialRaw opens a TCP connection to addr; every read and write on it
// must end by deadline.
func dialRaw(addr string, deadline time.Time) (*client, error) {
	nc, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := nc.SetDeadline(deadline); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return &client{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

// roundTrip writes a raw HTTP request and reads the response head.
func (c *client) roundTrip(req string) (*http.Response, error) {
	if _, err := io.WriteString(c.nc, req); err != nil {
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, fmt.Errorf("read handshake response: %w", err)
	}
	return resp, nil
}

// upgradeRequest returns a valid opening handshake for key, with extra
// header lines (each ending in \r\n) appended.
func upgradeRequest(host, key, extra string) string {
	return "GET /ws HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		extra + "\r\n"
}

// dialWS connects and completes a valid opening handshake.
func dialWS(addr string, deadline time.Time) (*client, error) {
	c, err := dialRaw(addr, deadline)
	if err != nil {
		return nil, err
	}
	key := newKey()
	resp, err := c.roundTrip(upgradeRequest(addr, key, ""))
	if err != nil {
		c.close()
		return nil, err
	}
	if err := checkUpgrade(resp, key); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// checkUpgrade checks a 101 answer to a handshake with key (RFC 6455
// §4.2.2 step 5).
func checkUpgrade(resp *http.Response, key string) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake status %s, want 101", resp.Status)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("Upgrade header %q, want websocket", resp.Header.Get("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fmt.Errorf("Connection header %q lacks upgrade", resp.Header.Values("Connection"))
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
		return fmt.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	return nil
}

// headerHasToken reports whether a comma-separated header holds token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// write sends raw bytes; chop sends them one byte per write.
func (c *client) write(b []byte, chop bool) error {
	if !chop {
		_, err := c.nc.Write(b)
		return err
	}
	for i := range b {
		if _, err := c.nc.Write(b[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

// next reads the next server frame.
// A compressed one (RSV1) is inflated; its rsv stays 0x40.
func (c *client) next() (frame, error) {
	f, err := readFrame(c.br, c.deflate)
	if err != nil || f.rsv == 0 {
		return f, err
	}
	p, err := inflate(f.payload)
	if err != nil {
		return f, fmt.Errorf("server's compressed frame: %w", err)
	}
	f.payload = p
	return f, nil
}

// expectTCPClose reads until the server closes the connection and fails
// if any byte arrives first, if the deadline passes, or if the server
// resets the connection instead of closing it.
func (c *client) expectTCPClose() error {
	var b [1]byte
	n, err := c.br.Read(b[:])
	switch {
	case n > 0:
		return fmt.Errorf("byte %#x after the close frame; want the TCP connection closed", b[0])
	case errors.Is(err, io.EOF):
		return nil
	case errors.Is(err, syscall.ECONNRESET):
		return errors.New("the server reset the TCP connection after its close frame (it closed with client data unread): " +
			"a client still writing loses the close frame and reports 1006, as Chromium does; " +
			"the server should read and discard until the client closes or a timeout passes")
	case err != nil:
		return fmt.Errorf("server did not close the TCP connection: %w", err)
	}
	return errors.New("read returned nothing")
}

func (c *client) close() { _ = c.nc.Close() }

// describeEnd says how a read ended, for failure messages.
func describeEnd(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the TCP connection without a close frame"
	case errors.Is(err, syscall.ECONNRESET):
		return "the server reset the TCP connection without a close frame"
	case errors.Is(err, syscall.EPIPE):
		return "the server closed the TCP connection (broken pipe)"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer before the deadline"
	}
	return err.Error()
}
