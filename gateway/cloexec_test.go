//go:build linux

package gateway_test

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/gateway"
)

// TestDescriptorsCloseOnExec: every descriptor a gateway opens (the
// listeners, the socket engine's epolls and eventfds, its dup of each
// WebSocket and TCP client's socket, the UDP listener's socket) is
// close-on-exec, so that a child
// process (the master's workers) inherits none.
func TestDescriptorsCloseOnExec(t *testing.T) {
	before := inheritable(t)
	gw := startEchoOn(t, gateway.Config{Listeners: []gateway.ListenerConfig{
		{Protocol: "ws", Addr: "127.0.0.1:0"},
		{Protocol: "tcp", Addr: "127.0.0.1:0"},
		{Protocol: "udp", Addr: "127.0.0.1:0"},
	}})
	uc, err := net.Dial("udp", gw.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	_, _ = uc.Write([]byte("hi"))
	_ = uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := uc.Read(make([]byte, 16)); err != nil {
		t.Fatalf("udp echo: %v", err)
	}
	for range 3 {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+gw.Addr("ws").String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		tc, err := net.Dial("tcp", gw.Addr("tcp").String())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		_, _ = tc.Write([]byte("hi\n"))
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(tc).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if n := gw.Stats().Connections; n != 7 {
		t.Fatalf("%d connections, want 7 (3 ws, 3 tcp, 1 udp peer)", n)
	}
	for fd, link := range inheritable(t) {
		if before[fd] != link {
			t.Errorf("descriptor %d (%s) is not close-on-exec", fd, link)
		}
	}
}

// inheritable returns the descriptors of this process above 2 that a child
// would inherit (not close-on-exec), with what they point to.
func inheritable(t *testing.T) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno != 0 || flags&syscall.FD_CLOEXEC != 0 {
			continue
		}
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		m[fd] = link
	}
	return m
}
