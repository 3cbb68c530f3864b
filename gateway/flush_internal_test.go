package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/bus"
)

// TestRingWrites: the flusher's batched writes deliver every frame whole
// and in order, to clients that read at once and to clients whose socket
// is full (the kernel takes part of a send, or none: the engine keeps the
// rest), and a client that resets its connection mid-stream is closed
// without disturbing the others. With NoIOUring the same traffic goes
// through write(2) and the ring is never used.
func TestRingWrites(t *testing.T) {
	if r, err := newSendRing(); err != nil {
		t.Skipf("no io_uring here (%v): the flusher writes each socket on its own", err)
	} else {
		r.close()
	}
	for _, off := range []bool{false, true} {
		t.Run(map[bool]string{false: "ring", true: "no_io_uring"}[off], func(t *testing.T) {
			testRingWrites(t, off)
		})
	}
}

func testRingWrites(t *testing.T, off bool) {
	const (
		readers = 4   // read while the sends come
		late    = 2   // read only once every send is queued: their sockets fill
		msgs    = 128 // each 64 KiB: 8 MiB per client, more than a socket buffers
		size    = 64 << 10
	)
	nc := testBus(t)
	echoWorker(t, nc)
	s := startServer(t, nc, Config{Shards: 1, NoIOUring: off, Listeners: []ListenerConfig{{
		Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: 1 << 20, MaxQueueBytes: 64 << 20}}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	var clients []*websocket.Conn
	for i := range readers + late {
		if i < readers {
			clients = append(clients, mustWS(t, s, "127.0.0.1"))
			continue
		}
		// A small receive buffer, so that the server's socket fills.
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10) })
		}}).DialContext}
		ws, _, err := d.Dial("ws://"+s.Addr("ws").String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.Close() })
		clients = append(clients, ws)
	}
	// One more that resets its connection after the first message.
	reset := mustWS(t, s, "127.0.0.1")
	waitFor(t, 5*time.Second, "the clients to register", func() bool { return s.Stats().Connections == len(clients)+1 })

	check := func(i int, ws *websocket.Conn) error {
		for k := range msgs {
			_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, m, err := ws.ReadMessage()
			if err != nil {
				return err
			}
			if len(m) != size || int(binary.BigEndian.Uint32(m)) != k || !bytes.Equal(m[4:], fill(size-4, byte(k))) {
				t.Errorf("client %d: message %d of %d bytes starts with %d", i, k, len(m), binary.BigEndian.Uint32(m))
				return nil
			}
		}
		return nil
	}
	var wg, lateWG sync.WaitGroup
	for i, ws := range clients[:readers] {
		wg.Go(func() {
			if err := check(i, ws); err != nil {
				t.Errorf("reader %d: %v", i, err)
			}
		})
	}
	subj, _ := bus.NewSubjects("")
	for k := range msgs {
		msg := make([]byte, size)
		binary.BigEndian.PutUint32(msg, uint32(k))
		copy(msg[4:], fill(size-4, byte(k)))
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToAll, Data: msg, Flag: true}
		if err := nc.Publish(subj.Broadcast(), bus.AppendCommand(nil, &cmd)); err != nil {
			t.Fatal(err)
		}
		if k > 0 && k%16 == 0 {
			// Paced, so that the gateway's bounded command channel
			// takes every one (under -race it is slow).
			want := uint64(1 + k*(readers+late))
			waitFor(t, 10*time.Second, "the sends to be queued", func() bool { return s.Stats().MessagesOut >= want })
		}
		if k == 0 {
			if _, _, err := reset.ReadMessage(); err != nil {
				t.Fatal(err)
			}
			_ = reset.NetConn().(*net.TCPConn).SetLinger(0)
			_ = reset.NetConn().Close() // RST
		}
	}
	_ = nc.Flush()
	wg.Wait()
	// The readers have everything: once the flusher stops writing, the
	// late clients' sockets are full and the engine holds the rest.
	sh := s.shards[0]
	last := sh.bytesOut.Load()
	for still := 0; still < 3; {
		time.Sleep(100 * time.Millisecond)
		if now := sh.bytesOut.Load(); now != last {
			last, still = now, 0
			continue
		}
		still++
	}
	sh.mu.Lock()
	full := 0
	for _, c := range sh.order {
		if c.state == stateOpen && c.unsent.Load() > 0 {
			full++
		}
	}
	sh.mu.Unlock()
	if full != late {
		t.Fatalf("%d sockets full before the late clients read, want %d", full, late)
	}
	for i, ws := range clients[readers:] {
		lateWG.Go(func() {
			if err := check(readers+i, ws); err != nil {
				t.Errorf("late reader %d: %v", i, err)
			}
		})
	}
	lateWG.Wait()
	waitFor(t, 5*time.Second, "the reset client to be closed", func() bool { return s.Stats().Connections == len(clients) })
	calls, whole, short := sh.ringCalls.Load(), sh.ringWhole.Load(), sh.ringShort.Load()
	t.Logf("ring: %d submissions, %d sends whole, %d short", calls, whole, short)
	if off {
		if calls != 0 || sh.ring != nil {
			t.Fatalf("NoIOUring: the ring made %d submissions", calls)
		}
		return
	}
	if calls == 0 || whole == 0 || short == 0 {
		t.Fatalf("ring: %d submissions, %d whole, %d short; want each > 0 (the test must reach the full-socket path)", calls, whole, short)
	}
}

// fill returns n bytes of b.
func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
