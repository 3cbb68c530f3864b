package node_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/worker"
)

// TestChurnEveryCycleWelcomed churns WebSocket connections against a node
// whose OnConnect binds a uid, joins a group and sends a welcome (the W4
// workload), many in flight, and asserts that every cycle completes: the
// 101, the welcome, the close handshake and the server's FIN, with no
// reset. A client closes the way Node's ws does: close frame, then its
// FIN once the server's close frame arrived.
//
// It once failed a few cycles per thousand: a lingering close sent its
// FIN (shutdown(2) on a raw descriptor) after the peer's own FIN had
// closed the socket and a new connection had been accepted on the same
// descriptor number, so the new client lost its connection after the 101.
func TestChurnEveryCycleWelcomed(t *testing.T) {
	if testing.Short() {
		t.Skip("churns thousands of connections")
	}
	h := echo.Handlers()
	var uids atomic.Uint64
	h.OnConnect = func(c *worker.Context) {
		c.BindUID("u" + strconv.FormatUint(uids.Add(1), 10))
		c.JoinGroup("g")
		c.Send([]byte("welcome:" + c.ClientID()))
	}
	n := startNode(t, h, nil)
	addr := n.Addr("ws").String()

	const (
		inFlight = 100
		cycles   = 3000
		budget   = 20 * time.Second // a bound for slow machines; about 2 s here
	)
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		failures   = map[string]int{}
		firstErr   error
		wg         sync.WaitGroup
	)
	deadline := time.Now().Add(budget)
	for range inFlight {
		wg.Go(func() {
			for next.Add(1) <= cycles && time.Now().Before(deadline) {
				if err := churnCycle(addr); err != nil {
					mu.Lock()
					failures[failureKind(err)]++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d cycles completed; failures by kind %v; first: %v", done.Load(), cycles, failures, firstErr)
	}
	if got := done.Load(); got < cycles/4 {
		t.Fatalf("only %d of %d cycles ran within %v", got, cycles, budget)
	}
}

// churnCycle runs one W4 cycle against the WebSocket listener at addr.
func churnCycle(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	const req = "GET / HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return fmt.Errorf("upgrade request: %w", err)
	}
	br := bufio.NewReader(nc)
	status, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("upgrade response: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		return fmt.Errorf("upgrade response: %q", status)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("upgrade response headers: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	op, payload, err := readServerFrame(br)
	if err != nil {
		return fmt.Errorf("after the 101, before the welcome: %w", err)
	}
	if op != 0x1 || !bytes.HasPrefix(payload, []byte("welcome:")) {
		return fmt.Errorf("first message: opcode %d %q", op, payload)
	}
	// A masked close frame, code 1000 (mask 0: the payload stays as is).
	if _, err := nc.Write([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8}); err != nil {
		return fmt.Errorf("close frame: %w", err)
	}
	if op, _, err = readServerFrame(br); err != nil || op != 0x8 {
		return fmt.Errorf("close reply: opcode %d: %w", op, err)
	}
	if err := nc.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("FIN: %w", err)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		return fmt.Errorf("waiting for the server's FIN: %d bytes: %w", len(rest), err)
	}
	return nil
}

// readServerFrame reads one unmasked frame of at most 64 KiB.
func readServerFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	switch {
	case h[1]&0x80 != 0 || n == 127:
		return 0, nil, fmt.Errorf("unexpected frame header %x", h)
	case n == 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// failureKind names a cycle's failure for the summary.
func failureKind(err error) string {
	kind, _, _ := strings.Cut(err.Error(), ":")
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		kind += " (EOF)"
	case strings.Contains(err.Error(), "reset by peer"):
		kind += " (reset)"
	case strings.Contains(err.Error(), "broken pipe"):
		kind += " (broken pipe)"
	}
	return kind
}
