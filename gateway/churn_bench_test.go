package gateway_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
)

// BenchmarkChurnCycle measures one short connection against the echo
// app: connect, the WebSocket upgrade, the connect events over the
// embedded NATS, one echo, the client's close. The client speaks raw
// bytes on a plain socket so that the profile is mostly the gateway's.
func BenchmarkChurnCycle(b *testing.B) {
	gw := startEchoOn(b, gateway.Config{Listeners: []gateway.ListenerConfig{{Protocol: "ws", Addr: "127.0.0.1:0"}}})
	addr := gw.Addr("ws").String()
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
