package load

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/gatework/gatework/internal/testwait"
)

// TestPollClient runs the event-loop client against a hand-written server
// on a real socket: a frame sent together with the upgrade answer (read
// by the handshake, before the socket joins a poller) is still counted, a
// ping is answered with a masked pong carrying its payload, a stamped
// message is counted and timed, and a close frame from the server is no
// error.
func TestPollClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pong := make(chan []byte, 1)
	serverErr := make(chan error, 1)
	go func() { serverErr <- pollTestServer(ln, pong) }()

	var cur atomic.Pointer[stats]
	s := &stats{start: time.Now()}
	cur.Store(s)
	pc, err := newPollClient(&cur, true, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.stop()
	c, err := dialWS(context.Background(), "ws://"+ln.Addr().String()+"/", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.adopt(c); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pong:
		if string(p) != "are you there" {
			t.Errorf("pong payload %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	if err := <-serverErr; err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return s.count.Load() == 2 })
	if n := s.errors.Load(); n != 0 {
		t.Errorf("%d errors after the server's close frame", n)
	}
	if d := s.hist.Quantile(1); d <= 0 || d > time.Minute {
		t.Errorf("stamped message timed at %v", d)
	}
}

// pollTestServer answers one upgrade with an early text frame in the same
// write, pings, waits for the pong (sent to pong), then sends a stamped
// message and a close frame.
func pollTestServer(ln net.Listener, pong chan<- []byte) error {
	nc, err := ln.Accept()
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	var hs bytes.Buffer
	rw := struct {
		io.Reader
		io.Writer
	}{br, &hs}
	if _, err := ws.Upgrade(rw); err != nil {
		return err
	}
	hs.Write(serverFrame(ws.OpText, []byte("early")))
	hs.Write(serverFrame(ws.OpPing, []byte("are you there")))
	if _, err := nc.Write(hs.Bytes()); err != nil {
		return err
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := ws.ReadHeader(br)
	if err != nil {
		return err
	}
	if !h.Masked || h.OpCode != ws.OpPong || h.Length > 125 {
		pong <- []byte("not a masked pong")
		return nil
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil {
		return err
	}
	ws.Cipher(p, h.Mask, 0)
	pong <- p
	out := append(serverFrame(ws.OpText, stamped(64)), serverFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))...)
	_, err = nc.Write(out)
	return err
}

// waitUntil polls cond for up to 5 s (testwait.For).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	testwait.For(t, 5*time.Second, "the condition", cond)
}
