package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT: a socket bound to
// a source address gets its port at connect time, per destination, so one
// source address is not limited to the ephemeral range once for all.
const ipBindAddressNoPort = 24

// wsConn is one client WebSocket connection of the load tool. It is used by
// one goroutine at a time except Close.
type wsConn struct {
	nc  net.Conn
	br  *bufio.Reader
	buf []byte // payload of the last frame read
}

// dialWS dials url from source address src ("" for any) and performs the
// handshake; it returns once the server accepted the upgrade (and, with
// deflate, permessage-deflate).
func dialWS(ctx context.Context, url, src string, deflate bool) (*wsConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	dialer := ws.Dialer{
		Timeout: 10 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
	if deflate {
		// The offer browsers make: client_max_window_bits without a value.
		dialer.Extensions = []httphead.Option{wsflate.Parameters{ClientMaxWindowBits: 1}.Option()}
	}
	nc, br, hs, err := dialer.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("load: dial %s: %w", url, err)
	}
	if deflate && (len(hs.Extensions) == 0 || string(hs.Extensions[0].Name) != "permessage-deflate") {
		_ = nc.Close()
		return nil, fmt.Errorf("load: dial %s: the server did not accept permessage-deflate (is compression enabled on the listener?)", url)
	}
	c := &wsConn{nc: nc, br: br}
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, readBufSize)
	}
	return c, nil
}

// readBufSize is a client's read buffer: room for the ~40 fan-out frames
// a coalescing server writes at once, so that the client reads them in
// one syscall (and acknowledges them once) rather than five at a time.
const readBufSize = 4096

// LocalAddr is the client's address as the server sees it (ip:port).
func (c *wsConn) LocalAddr() string { return c.nc.LocalAddr().String() }

// Close closes the socket without a close handshake.
func (c *wsConn) Close() error { return c.nc.Close() }

// writeText sends p as one masked text frame in one write.
func (c *wsConn) writeText(p []byte) error {
	_, err := c.nc.Write(appendMasked(make([]byte, 0, len(p)+14), ws.OpText, p))
	return err
}

// errClosed reports a close frame from the server.
var errClosed = errors.New("load: server closed the connection")

// readMessage returns the payload of the next data frame; it answers pings
// and skips pongs. The slice is valid until the next call.
func (c *wsConn) readMessage() ([]byte, error) {
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, err
		}
		if int64(cap(c.buf)) < h.Length {
			c.buf = make([]byte, h.Length)
		}
		c.buf = c.buf[:h.Length]
		if _, err := io.ReadFull(c.br, c.buf); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(c.buf, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			return nil, errClosed
		case ws.OpPing:
			f := ws.MaskFrameInPlace(ws.NewPongFrame(append([]byte(nil), c.buf...)))
			if err := ws.WriteFrame(c.nc, f); err != nil {
				return nil, err
			}
		case ws.OpPong:
		default:
			return c.buf, nil
		}
	}
}

// stampLen is the length of the decimal nanosecond timestamp that starts
// every timed message.
const stampLen = 19

// stamped returns a size-byte message starting with the current time in
// nanoseconds (at least stampLen bytes).
func stamped(size int) []byte {
	if size < stampLen {
		size = stampLen
	}
	b := make([]byte, size)
	s := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
	copy(b[stampLen-len(s):], s)
	for i := 0; i < stampLen-len(s); i++ {
		b[i] = '0'
	}
	for i := stampLen; i < size; i++ {
		b[i] = 'x'
	}
	return b
}

// stampAge returns how long ago a stamped message was made; ok is false when
// msg does not start with a timestamp.
func stampAge(msg []byte, now time.Time) (time.Duration, bool) {
	if len(msg) < stampLen {
		return 0, false
	}
	ns, err := strconv.ParseInt(string(msg[:stampLen]), 10, 64)
	if err != nil {
		return 0, false
	}
	return now.Sub(time.Unix(0, ns)), true
}
