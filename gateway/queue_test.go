package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/bus"
)

// dialSlowWS connects a WebSocket client with a tiny receive buffer that
// says hello:name and then reads nothing until the test makes it.
func dialSlowWS(t *testing.T, s *Server, name string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		return nd.DialContext(ctx, network, addr)
	}}
	ws, _, err := d.Dial("ws://"+s.Addr("ws").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello:"+name)); err != nil {
		t.Fatal(err)
	}
	return ws
}

// seqOf returns the sequence number at the front of a test message.
func seqOf(msg []byte) int {
	n, err := strconv.Atoi(string(msg[:6]))
	if err != nil {
		return -1
	}
	return n
}

// TestQueuePolicies: readers and one client that never reads get a
// broadcast of far more than the queue bound and the socket buffers hold.
// The readers get every message in order; the slow client is closed as a
// slow consumer (disconnect) or keeps its connection and loses whole
// messages, the oldest or the newest as its policy says; the gateway never
// queues more than max_queue_bytes for it.
func TestQueuePolicies(t *testing.T) {
	const (
		bound = 128 << 10
		size  = 4 << 10
		total = 1504 // 6 MB, a multiple of batch
		batch = 8    // 32 KiB in flight to the readers at a time
	)
	for _, policy := range []string{QueueDisconnect, QueueDropOldest, QueueDropNewest} {
		t.Run(policy, func(t *testing.T) {
			l := wsListener(-1, -1) // no pings: every frame is a message
			l.MaxQueueBytes, l.QueuePolicy = bound, policy
			s, r, nc := startWithWorker(t, Config{Listeners: []ListenerConfig{l}, CloseTimeout: 500 * time.Millisecond})

			const nReaders = 3
			var got [nReaders]atomic.Int64
			errs := make(chan error, nReaders)
			var wg sync.WaitGroup
			var readers []*websocket.Conn
			t.Cleanup(func() {
				for _, ws := range readers {
					_ = ws.Close()
				}
				wg.Wait()
			})
			for i := range nReaders {
				ws := dialHello(t, s, fmt.Sprint("reader", i), true, nil)
				r.id(t, fmt.Sprint("reader", i))
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						_, msg, err := ws.ReadMessage()
						if err != nil {
							return
						}
						if n := seqOf(msg); n != int(got[i].Load()) || len(msg) != size {
							errs <- fmt.Errorf("reader %d: got message %d (%d bytes), want %d", i, n, len(msg), got[i].Load())
							return
						}
						got[i].Add(1)
					}
				}()
				readers = append(readers, ws)
			}
			slow := dialSlowWS(t, s, "slow")
			slowID := r.id(t, "slow")
			sc, err := s.lookup(slowID)
			if err != nil {
				t.Fatal(err)
			}

			subj, _ := bus.NewSubjects("")
			msg := make([]byte, size)
			for i := range msg {
				msg[i] = 'x'
			}
			var maxQueued int64
			for i := 0; i < total; i += batch {
				for j := i; j < i+batch; j++ {
					copy(msg, fmt.Sprintf("%06d", j))
					cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToAll, Data: msg}
					if err := nc.Publish(subj.Broadcast(), bus.AppendCommand(nil, &cmd)); err != nil {
						t.Fatal(err)
					}
				}
				waitFor(t, 10*time.Second, "the readers", func() bool {
					for k := range nReaders {
						if got[k].Load() < int64(i+batch) {
							select {
							case err := <-errs:
								t.Fatal(err)
							default:
							}
							return false
						}
					}
					return true
				})
				sc.sh.mu.Lock()
				if sc.state == stateOpen {
					maxQueued = max(maxQueued, sc.queuedLocked())
				}
				sc.sh.mu.Unlock()
			}
			select {
			case err := <-errs:
				t.Fatal(err)
			default: // every reader has all total messages (the last waitFor)
			}
			if maxQueued > bound {
				t.Fatalf("slow client's queue reached %d bytes, bound %d", maxQueued, bound)
			}
			st := s.Stats()
			if policy == QueueDisconnect {
				waitFor(t, 10*time.Second, "the slow client's close event", func() bool { return r.closeReason(slowID) != "" })
				if reason := r.closeReason(slowID); reason != "slow_consumer" || st.Closes["slow_consumer"] != 1 || st.Dropped[QueueDisconnect] != 1 {
					t.Fatalf("close reason %q, closes %v, dropped %v", reason, st.Closes, st.Dropped)
				}
				return
			}
			if sc.closing() {
				t.Fatal("slow client closed under " + policy)
			}
			dropped := st.Dropped[policy]
			if dropped == 0 || st.Closes["slow_consumer"] != 0 {
				t.Fatalf("dropped %v, closes %v", st.Dropped, st.Closes)
			}
			// Now read what the slow client was left: whole messages in
			// order, and together with the dropped ones all of them.
			received, last := 0, -1
			for {
				_ = slow.SetReadDeadline(time.Now().Add(time.Second))
				_, m, err := slow.ReadMessage()
				if err != nil {
					break
				}
				n := seqOf(m)
				if n <= last || len(m) != size {
					t.Fatalf("slow client: message %d (%d bytes) after %d", n, len(m), last)
				}
				received, last = received+1, n
			}
			if uint64(received)+dropped != total {
				t.Fatalf("slow client received %d, dropped %d; want %d in all", received, dropped, total)
			}
			switch policy {
			case QueueDropOldest:
				if last != total-1 {
					t.Fatalf("drop_oldest: last message %d, want the newest %d", last, total-1)
				}
				// Everything is written: no frame bookkeeping is left.
				waitFor(t, 5*time.Second, "empty frame records", func() bool {
					n := 0
					for _, sh := range s.shards {
						sh.mu.Lock()
						n += len(sh.queues) + len(sh.held)
						sh.mu.Unlock()
					}
					return n == 0
				})
			case QueueDropNewest:
				if last >= total-1 || received == 0 {
					t.Fatalf("drop_newest: last message %d of %d received; the newest must be dropped", last, received)
				}
			}
		})
	}
}

// TestQueueDropOldestTCP: the same bound and policy on a line-framed TCP
// listener: a client that reads nothing during a burst later reads whole
// lines only, in order, ending with the newest, and what it lacks was
// counted as dropped.
func TestQueueDropOldestTCP(t *testing.T) {
	const (
		bound = 64 << 10
		size  = 4 << 10
		total = 1500
	)
	s, r, nc := startWithWorker(t, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0",
		MaxQueueBytes: bound, QueuePolicy: QueueDropOldest}}})
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	slow, err := nd.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("hello:slow\n")); err != nil {
		t.Fatal(err)
	}
	sc, err := s.lookup(r.id(t, "slow"))
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := bus.NewSubjects("")
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = 'y'
	}
	var maxQueued int64
	for i := range total {
		copy(msg, fmt.Sprintf("%06d", i))
		cmd := bus.Command{Version: bus.Version, Op: bus.OpSendToClient, Clients: []string{sc.id(s.ID())}, Data: msg}
		if err := nc.Publish(subj.Cmd(s.ID()), bus.AppendCommand(nil, &cmd)); err != nil {
			t.Fatal(err)
		}
		sc.sh.mu.Lock()
		maxQueued = max(maxQueued, sc.queuedLocked())
		sc.sh.mu.Unlock()
	}
	// Commands run in order: once this one is answered, every send is done.
	probe := bus.Command{Version: bus.Version, Op: bus.OpIsOnline, Clients: []string{sc.id(s.ID())}}
	if _, err := nc.Request(subj.Cmd(s.ID()), bus.AppendCommand(nil, &probe), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if maxQueued > bound {
		t.Fatalf("queue reached %d bytes, bound %d", maxQueued, bound)
	}
	rd := bufio.NewReader(slow)
	received, last := 0, -1
	for {
		_ = slow.SetReadDeadline(time.Now().Add(time.Second))
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		n := seqOf([]byte(line))
		if n <= last || len(line) != size+1 {
			t.Fatalf("message %d (%d bytes) after %d", n, len(line), last)
		}
		received, last = received+1, n
	}
	dropped := s.Stats().Dropped[QueueDropOldest]
	if dropped == 0 || uint64(received)+dropped != total || last != total-1 {
		t.Fatalf("received %d (last %d), dropped %d; want drops, %d in all, the newest last", received, last, dropped, total)
	}
}

// TestDropOldestKeepsRoom: under drop_oldest the flusher hands the socket
// engine at most half of MaxQueueBytes (whole frames, at least one), so
// that older frames stay in the gateway, droppable, and a stalled socket
// never leaves a newer message with nothing to drop but itself. (Handing
// over the whole queue made the newest message lose, now and then, to
// the ones already in the engine.)
func TestDropOldestKeepsRoom(t *testing.T) {
	cfg := Config{Logger: slog.New(slog.DiscardHandler), Shards: 1, Listeners: []ListenerConfig{
		{Protocol: "tcp", Addr: "127.0.0.1:0", MaxQueueBytes: 100, QueuePolicy: QueueDropOldest}}}
	cfg.applyDefaults()
	s := &Server{cfg: cfg, id: "0123456789", log: cfg.Logger, inflight: map[uint64]*delivery{}, quit: make(chan struct{})}
	s.interest = newInterest(s)
	s.shards = append(s.shards, newShard(s))
	l := &listener{s: s, cfg: cfg.Listeners[0]}
	c := s.newConn(l, &countingTransport{}, netip.MustParseAddrPort("127.0.0.1:1234"))
	sh := c.sh
	frame := func(b byte) []byte { return bytes.Repeat([]byte{b}, 30) }

	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, b := range []byte("abc") {
		sh.enqueueLocked(c, frame(b))
	}
	if got := sh.takeOutLocked(c); string(got) != string(frame('a')) {
		t.Fatalf("took %q, want the first frame only (60 bytes would pass half the bound)", got)
	}
	c.unsent.Add(30) // what the flusher does with the taken bytes
	if string(c.out) != string(frame('b'))+string(frame('c')) {
		t.Fatalf("kept %q, want frames b and c", c.out)
	}
	// The socket is stalled with "a"; a fourth frame drops "b", the oldest
	// still here, not itself.
	sh.enqueueLocked(c, frame('d'))
	if string(c.out) != string(frame('c'))+string(frame('d')) {
		t.Fatalf("after a fourth frame: %q, want frames c and d", c.out)
	}
	if n := s.stats.dropped[dropOldest].Load(); n != 1 {
		t.Fatalf("dropped %d, want 1", n)
	}
}
