package gateway

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gatework/gatework/internal/uring"
)

// sendRing submits many sockets' sends with one io_uring_enter(2): on this
// kind of VM a system call's entry and exit cost about as much as a small
// TCP send itself, so a flush of N connections that made N write(2)s makes
// one call instead (docs/benchmarks.md, "Batched socket writes").
//
// Only the shard's flusher goroutine uses its ring. Every send is
// MSG_DONTWAIT: it completes, sent whole, in part or with EAGAIN, inside
// the submitting call, so no buffer is still the kernel's when send
// returns.
type sendRing struct{ r *uring.Ring }

const (
	sendRingEntries = 256
	sendFlags       = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
)

// newSendRing sets up a ring, or returns an error when the kernel has no
// io_uring or refuses it (io_uring_disabled, a seccomp filter): the
// flusher then writes each socket with write(2).
func newSendRing() (*sendRing, error) {
	r, err := uring.New(sendRingEntries, uring.SetupSubmitAll|uring.SetupCoopTask)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return &sendRing{r: r}, nil
}

// size is the most sends one call to send takes.
func (s *sendRing) size() int { return s.r.Entries() }

// send sends bufs[i] on socket fds[i], all in one system call (at most
// size() of them), and stores in res[i] the bytes sent or a negative
// errno (-EAGAIN: nothing fitted). Every buffer is free again when it
// returns without an error. The caller keeps each descriptor open
// meanwhile.
func (s *sendRing) send(fds []int, bufs [][]byte, res []int32) error {
	defer runtime.KeepAlive(bufs) // the kernel reads them through raw addresses
	n := len(fds)
	for i := range n {
		s.r.Queue(uring.SQE{Opcode: uring.OpSend, Fd: int32(fds[i]),
			Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(bufs[i])))), Len: uint32(len(bufs[i])),
			OpFlags: sendFlags, UserData: uint64(i)})
	}
	for done := 0; done < n; {
		if err := s.r.Submit(n - done); err != nil {
			// Not reached with a ring only this goroutine uses. The
			// sends not completed may still read their buffers: the
			// caller must give the ring up and leak them to the GC.
			return fmt.Errorf("gateway: %w", err)
		}
		s.r.Reap(func(c uring.CQE) {
			if i := int(c.UserData); i < n {
				res[i] = c.Res
				done++
			}
		})
	}
	return nil
}

func (s *sendRing) close() { s.r.Close() }
