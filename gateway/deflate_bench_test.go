package gateway

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatework/gatework/bus"
)

// BenchmarkFanOutJSONSockets measures a SendToGroup of a 1 KiB JSON
// message to 500 WebSocket clients on real sockets, uncompressed and with
// permessage-deflate: cpu-ns/delivery is the process's CPU time (user and
// system: the gateway's shards and socket writes, and the clients' reads,
// which discard the bytes) per delivery; wire-B/delivery the frame size.
func BenchmarkFanOutJSONSockets(b *testing.B) {
	const n = 500
	msg := benchJSON(1024)
	for _, tc := range []struct {
		name  string
		offer string
	}{{"plain", ""}, {"deflate", "permessage-deflate; client_max_window_bits"}} {
		b.Run(tc.name, func(b *testing.B) {
			nc := testBus(b)
			echoWorker(b, nc)
			lc := ListenerConfig{Protocol: "ws", Addr: "127.0.0.1:0", MaxQueueBytes: 64 << 20}
			if tc.offer != "" {
				lc.Compression = Compression{Enabled: true}
			}
			s, err := New(nc, Config{Logger: slog.New(slog.DiscardHandler), Listeners: []ListenerConfig{lc}})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s.Shutdown(ctx)
			})
			var got atomic.Int64
			var wg sync.WaitGroup
			conns := make([]net.Conn, 0, n)
			b.Cleanup(func() { // before Shutdown (cleanups run last first)
				for _, c := range conns {
					_ = c.Close()
				}
				wg.Wait()
			})
			for range n {
				c := dialBench(b, s.Addr("ws").String(), tc.offer)
				conns = append(conns, c)
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 64<<10)
					for {
						k, err := c.Read(buf)
						got.Add(int64(k))
						if err != nil {
							return
						}
					}
				}()
			}
			waitBench(b, func() bool { return s.connCount() == n })
			var frameLen int
			for _, sh := range s.shards {
				sh.mu.Lock()
				for _, c := range sh.conns {
					sh.joinLocked(c, "room")
					fc := frameCache{msg: msg}
					frameLen = len(fc.get(c))
				}
				sh.mu.Unlock()
			}
			cmd := &bus.Command{Op: bus.OpSendToGroup, Groups: []string{"room"}, Data: msg}
			cpu0 := cpuNanos()
			b.ResetTimer()
			var sent int64
			for b.Loop() {
				if err := s.broadcast(cmd); err != nil {
					b.Fatal(err)
				}
				sent++
				if sent%8 == 0 {
					want := sent * int64(frameLen) * n
					waitBench(b, func() bool { return got.Load() >= want })
				}
			}
			want := sent * int64(frameLen) * n
			waitBench(b, func() bool { return got.Load() >= want })
			b.StopTimer()
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(sent*n), "cpu-ns/delivery")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*n), "ns/delivery")
			b.ReportMetric(float64(frameLen), "wire-B/delivery")
		})
	}
}

// cpuNanos is the process's user and system CPU time so far.
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// dialBench upgrades a raw WebSocket client, offering ext unless "".
func dialBench(b *testing.B, addr, ext string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if ext != "" {
		req += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("upgrade: %v %v", resp, err)
	}
	if ext != "" && resp.Header.Get("Sec-WebSocket-Extensions") == "" {
		b.Fatal("permessage-deflate not accepted")
	}
	return c
}

// waitBench waits up to 20 s for cond.
func waitBench(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(100 * time.Microsecond)
	}
}
