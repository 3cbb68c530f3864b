package gateway

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// closeOnExecPollers marks close-on-exec every anonymous-inode descriptor
// of the process (epoll, eventfd, timerfd...) that is not: those are what
// nbio's Engine.Start creates without the flag, and no anonymous inode is
// meant to be handed to a child (Go opens its own close-on-exec). nbio
// keeps the numbers to itself, hence the look through /proc/self/fd. The
// caller holds syscall.ForkLock for reading.
func closeOnExecPollers() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno != 0 || flags&syscall.FD_CLOEXEC != 0 {
			continue // closed meanwhile (the directory's own), or already set
		}
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(link, "anon_inode:") {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}
