//go:build linux

package gateway

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTCPKeepAliveConfig: tcp_keepalive is checked and turned into the
// listener's keep-alive settings.
func TestTCPKeepAliveConfig(t *testing.T) {
	tests := []struct {
		name      string
		l         ListenerConfig
		wantErr   string
		keepAlive time.Duration // the ListenConfig.KeepAlive: -1 off, 0 Go's default
		idle      time.Duration // KeepAliveConfig.Idle when enabled
	}{
		{"ws default: the idle timeout finds dead peers", ListenerConfig{Protocol: "ws"}, "", -1, 0},
		{"tcp default: Go's keep-alive", ListenerConfig{Protocol: "tcp"}, "", 0, 0},
		{"set", ListenerConfig{Protocol: "ws", TCPKeepAlive: 2 * time.Minute, PingInterval: -1, IdleTimeout: -1}, "", 2 * time.Minute, 2 * time.Minute},
		{"off", ListenerConfig{Protocol: "tcp", TCPKeepAlive: -1}, "", -1, 0},
		{"too short", ListenerConfig{Protocol: "tcp", TCPKeepAlive: 500 * time.Millisecond}, "tcp_keepalive", 0, 0},
		{"udp", ListenerConfig{Protocol: "udp", TCPKeepAlive: time.Minute}, "tcp_keepalive", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.l.Addr = "127.0.0.1:0"
			err := Config{Listeners: []ListenerConfig{tt.l}}.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ka, kc := tt.l.WithDefaults().keepAlive()
			if ka != tt.keepAlive || (tt.idle > 0) != kc.Enable || kc.Idle != tt.idle {
				t.Errorf("keepAlive %v %+v, want %v idle %v", ka, kc, tt.keepAlive, tt.idle)
			}
		})
	}
}

// TestTCPKeepAliveOnSockets: an accepted socket of a listener with
// tcp_keepalive has the kernel's keep-alive on with that idle time.
func TestTCPKeepAliveOnSockets(t *testing.T) {
	nc := testBus(t)
	echoWorker(t, nc)
	s := startServer(t, nc, Config{Listeners: []ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0", TCPKeepAlive: 9 * time.Second}}})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	c, err := net.Dial("tcp", s.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, 5*time.Second, "the connection", func() bool { return s.connCount() == 1 })
	var tr *tcpTransport
	s.eachShard(func(sh *shard) {
		for _, cn := range sh.conns {
			tr, _ = cn.t.(*tcpTransport)
		}
	})
	if tr == nil {
		t.Fatal("no tcp connection in the shards")
	}
	rc, err := tr.nc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle, intvl, cnt int
	var gerr error
	_ = rc.Control(func(fd uintptr) {
		on, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		cnt, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if on != 1 || idle != 9 || intvl != 3 || cnt != 3 {
		t.Errorf("SO_KEEPALIVE %d, TCP_KEEPIDLE %d, TCP_KEEPINTVL %d, TCP_KEEPCNT %d; want 1, 9, 3, 3", on, idle, intvl, cnt)
	}
}

// TestListenersArePlainTCP: ws and tcp listeners listen with plain TCP,
// not the Multipath TCP that Go's net package chooses by default where
// the kernel has it (every handshake of an MPTCP listener goes through
// its subflow layer first).
func TestListenersArePlainTCP(t *testing.T) {
	s := startWSAndTCP(t, testBus(t), 0)
	for _, l := range s.listeners {
		ne := nbioEngineOf(t, l)
		ne.mu.Lock()
		ln := ne.ln
		ne.mu.Unlock()
		sc, ok := ln.(interface {
			SyscallConn() (syscall.RawConn, error)
		})
		if !ok {
			t.Fatalf("listener %s: %T has no descriptor", l.cfg.Protocol, ln)
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var proto int
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			proto, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
		}); err != nil || gerr != nil {
			t.Fatalf("listener %s: SO_PROTOCOL: %v %v", l.cfg.Protocol, err, gerr)
		}
		if proto != unix.IPPROTO_TCP {
			t.Errorf("listener %s: protocol %d, want %d (TCP; %d is MPTCP)", l.cfg.Protocol, proto, unix.IPPROTO_TCP, unix.IPPROTO_MPTCP)
		}
	}
}
