package gateway

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
)

// Close-on-exec for the socket engine's descriptors.
//
// nbio (v1.6.12, the newest release the module proxy serves) creates its
// descriptors with raw system calls and without close-on-exec: the dup(2)
// of every socket handed to Engine.AddConn, and each poller's epoll and
// eventfd, created by Engine.Start. A process that starts a child (the
// master starts its worker processes, at start, reload and crash restart)
// hands that child a copy of each. A client's socket then outlives the
// master's close of it, owned by a worker (the client's TCP connection sits
// in CLOSE-WAIT, and a worker, which runs as the restricted bus user, holds
// raw client sockets), and its epoll registration outlives the master's
// descriptor, so the level-triggered entry fires forever and the master
// spins.
//
// The gateway fixes it where the descriptors are made: it creates each of
// them and marks it close-on-exec while holding syscall.ForkLock for
// reading. os/exec (syscall.forkExec) forks while holding ForkLock for
// writing, so no child can start between the creation and the flag. Go's
// own descriptors (listeners, accepted sockets, files, pipes) are opened
// close-on-exec atomically already. Nothing under the read lock takes a
// gateway lock or calls back into the gateway. (No newer nbio release nor
// maintained fork fixes it; a patched copy of nbio in this tree would be
// more to maintain than these two wrappers.) The master's supervisor also
// marks every descriptor close-on-exec before it starts a child
// (master/proc_linux.go): a safety net only, since a descriptor made
// without the lock between that and the fork would still leak.

// adoptSocket hands c to the socket engine's ownership: nbio.NBConn dups
// c's descriptor and closes c, and the dup is made close-on-exec before any
// child can start. The result goes to Engine.AddConn, which takes it as it
// is. On error the caller closes c (which may be closed already: that is
// harmless).
func adoptSocket(c net.Conn) (*nbio.Conn, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	nc, err := nbio.NBConn(c)
	if err != nil {
		return nil, fmt.Errorf("gateway: adopt socket: %w", err)
	}
	rc, err := nc.SyscallConn()
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("gateway: adopt socket: %w", err)
	}
	_ = rc.Control(func(fd uintptr) { syscall.CloseOnExec(int(fd)) })
	return nc, nil
}

// startEngine starts e, whose pollers create their epoll and eventfd
// descriptors, and marks those close-on-exec before any child can start.
// An engine that cannot be marked is stopped again.
func startEngine(e *nbio.Engine) error {
	started, err := func() (bool, error) {
		syscall.ForkLock.RLock()
		defer syscall.ForkLock.RUnlock()
		if err := e.Start(); err != nil {
			return false, err
		}
		return true, closeOnExecPollers()
	}()
	if err != nil && started {
		time.Sleep(minEngineLife) // see nbioEngine.stop
		e.Stop()
		return fmt.Errorf("gateway: mark the socket engine's descriptors close-on-exec: %w", err)
	}
	return err
}
