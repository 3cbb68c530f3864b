package master

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerAllowed reports whether the process at the other end of a control
// socket connection may talk to this master: it must run as the master's
// effective user, or as root. The socket's mode (0600) already keeps
// other users out; this check holds even if the mode is loosened (a umask
// of 0 between listen and chmod, a chmod by hand).
func peerAllowed(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != uint32(os.Geteuid()) && cred.Uid != 0 {
		return fmt.Errorf("forbidden: peer uid %d is not the master's (%d)", cred.Uid, os.Geteuid())
	}
	return nil
}
