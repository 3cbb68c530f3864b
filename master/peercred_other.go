//go:build !linux

package master

import "net"

// peerAllowed: without SO_PEERCRED, the socket's mode (0600) is the only
// guard.
func peerAllowed(net.Conn) error { return nil }
