package gateway_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/worker"
)

// BenchmarkChurnCycle measures one short connection against the echo
// app: connect, the WebSocket upgrade, the connect events over the
// embedded NATS, one echo, the client's close. The client speaks raw
// bytes on a plain socket so that the profile is mostly the gateway's.
func BenchmarkChurnCycle(b *testing.B) {
	gw := startEchoOn(b, gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	churnCycles(b, gw.Addr("ws").String())
}

// BenchmarkChurnCycleWorker is BenchmarkChurnCycle against the worker
// package's echo (a real worker.Worker, which announces its handlers):
// with OnWebSocketConnect and OnClose (every event is sent) and without
// (the gateway leaves those events out: closeevents.go).
func BenchmarkChurnCycleWorker(b *testing.B) {
	for _, tc := range []struct {
		name     string
		handlers bool
	}{{"every_event", true}, {"connect_message", false}} {
		b.Run(tc.name, func(b *testing.B) {
			nc := gateway.StartTestBus(b)
			gw, err := gateway.New(nc, gateway.Config{Logger: slog.New(slog.DiscardHandler),
				Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
			if err != nil {
				b.Fatal(err)
			}
			if err := gw.Start(); err != nil {
				b.Fatal(err)
			}
			h := worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) { c.Send(msg) }}
			if tc.handlers {
				h.OnWebSocketConnect = func(*worker.Context, *worker.Request) {}
				h.OnClose = func(*worker.Context) {}
			}
			w, err := worker.New(nc, nil, worker.Config{Logger: slog.New(slog.DiscardHandler)}, h)
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = w.Stop(context.Background()) })
			b.Cleanup(func() { _ = gw.Shutdown(context.Background()) })
			for deadline := time.Now().Add(5 * time.Second); gateway.SkipsCloseEvents(gw) == tc.handlers; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the worker's announcement did not arrive")
				}
			}
			churnCycles(b, gw.Addr("ws").String())
		})
	}
}

// churnCycles runs b.N cycles against the WebSocket listener at addr.
func churnCycles(b *testing.B, addr string) {
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	// A masked text frame "hi" (mask 0), and a masked close frame 1000.
	msg := []byte{0x81, 0x82, 0, 0, 0, 0, 'h', 'i'}
	closeFrame := []byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8}
	b.ReportAllocs()
	for b.Loop() {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(append(append([]byte(nil), req...), msg...)); err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReader(nc)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
		}
		var echo [4]byte
		if _, err := br.Read(echo[:]); err != nil || echo[0] != 0x81 {
			b.Fatalf("echo %x, %v", echo, err)
		}
		if _, err := nc.Write(closeFrame); err != nil {
			b.Fatal(err)
		}
		for { // the server's close frame, then its FIN
			if _, err := br.ReadByte(); err != nil {
				break
			}
		}
		_ = nc.Close()
	}
}

// TestHandshakeInPieces: an upgrade request that arrives in several
// reads, or whole with a frame behind it in the same read, is answered
// once, and the frame behind it is delivered (the handshake parses a
// whole request where it lies and copies only an incomplete one).
func TestHandshakeInPieces(t *testing.T) {
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0", Path: "/chat"}}})
	addr := gw.Addr("ws").String()
	req := "GET /chat?room=1 HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	msg := string([]byte{0x81, 0x82, 0, 0, 0, 0, 'h', 'i'})
	for _, tt := range []struct {
		name   string
		pieces []string
	}{
		{"whole, frame behind", []string{req + msg}},
		{"three reads", []string{req[:10], req[10:60], req[60:] + msg}},
		{"head end split", []string{req[:len(req)-2], req[len(req)-2:], msg}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			for _, p := range tt.pieces {
				if _, err := nc.Write([]byte(p)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond) // separate reads on the server
			}
			br := bufio.NewReader(nc)
			status, err := br.ReadString('\n')
			if err != nil || status != "HTTP/1.1 101 Switching Protocols\r\n" {
				t.Fatalf("status %q, %v", status, err)
			}
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "\r\n" {
					break
				}
			}
			var echo [4]byte
			if _, err := io.ReadFull(br, echo[:]); err != nil || string(echo[:]) != "\x81\x02hi" {
				t.Fatalf("echo %q, %v", echo, err)
			}
		})
	}
}
