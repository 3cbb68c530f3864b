//go:build unix

package gateway

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortControl is a net.ListenConfig.Control that sets SO_REUSEPORT
// before the bind: several processes of the same user then listen on one
// address and the kernel spreads the new connections over them (by a hash
// of the peer's address and port).
func reusePortControl(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", serr)
	}
	return nil
}

// ReserveAddr binds a socket with SO_REUSEPORT to addr for a listener of
// protocol ("ws" and "tcp": TCP; "udp": UDP) and returns the address it
// got (port 0 resolved) and the socket to close when the address is no
// longer needed. A reserved TCP address is bound but does not listen: it
// takes no connection, and gateways started with Config.ReusePort listen
// on the same address beside it, so a port 0 resolved once stays this
// node's while its gateway processes come and go. A UDP socket would take
// datagrams, so for "udp" the socket is closed at once (the closer does
// nothing): the port is resolved, not held. It does not block.
func ReserveAddr(protocol, addr string) (net.Addr, io.Closer, error) {
	network := "tcp"
	if protocol == "udp" {
		network = "udp"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: reserve %s: %w", addr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return nil, nil, fmt.Errorf("gateway: reserve %s: cannot resolve %q", addr, host)
		}
		ip = ips[0]
	}
	pn, err := net.LookupPort(network, port)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: reserve %s: %w", addr, err)
	}
	family, sa := unix.AF_INET, unix.Sockaddr(nil)
	if ip4 := ip.To4(); ip4 != nil {
		sa4 := &unix.SockaddrInet4{Port: pn}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{Port: pn}
		copy(sa6.Addr[:], ip.To16())
		sa = sa6
	}
	typ := unix.SOCK_STREAM
	if network == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: reserve %s: socket: %w", addr, err)
	}
	// SO_REUSEPORT only: with SO_REUSEADDR as well, a socket that does not
	// listen would conflict with the listeners' binds.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		_ = unix.Close(fd)
		return nil, nil, fmt.Errorf("gateway: reserve %s: SO_REUSEPORT: %w", addr, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return nil, nil, fmt.Errorf("gateway: reserve %s: bind: %w", addr, err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		_ = unix.Close(fd)
		return nil, nil, fmt.Errorf("gateway: reserve %s: %w", addr, err)
	}
	var out net.Addr
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		out = sockAddr(network, net.IP(a.Addr[:]).To16(), a.Port, "")
	case *unix.SockaddrInet6:
		out = sockAddr(network, net.IP(a.Addr[:]), a.Port, "")
	}
	f := os.NewFile(uintptr(fd), "reserved "+addr)
	if network == "udp" {
		_ = f.Close()
		return out, io.NopCloser(nil), nil
	}
	return out, f, nil
}

func sockAddr(network string, ip net.IP, port int, zone string) net.Addr {
	if network == "udp" {
		return &net.UDPAddr{IP: ip, Port: port, Zone: zone}
	}
	return &net.TCPAddr{IP: ip, Port: port, Zone: zone}
}
