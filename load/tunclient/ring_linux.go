package tunclient

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gatework/gatework/internal/uring"
)

// ring moves a device queue's packets through io_uring: ringReads reads
// stay queued on the device all the time, each into a buffer of its own,
// and one io_uring_enter(2) both hands the kernel the packets to write
// and waits for those read, so a busy engine makes one system call per
// batch of packets instead of one per packet each way. The reader
// goroutine of the queue alone uses it (Exchange); Close may come from
// any goroutine and wakes a waiting Exchange through an eventfd.
type ring struct {
	q      *uring.Ring
	wakeFD int

	bufs   [ringReads][ringBufSize]byte
	in     [][]byte // the packets read, returned by Exchange
	rearm  []int    // buffers handed out by the last Exchange, to read into again
	writes int      // writes submitted, not yet completed
	reads  int      // device reads queued, not yet completed
	// The cancel of release: done, and its result.
	cancelDone bool
	cancelRes  int32
	releasing  bool // release runs: nothing is read again
	wakeBuf    [8]byte
	closed     atomic.Bool
	wakeMu     sync.Mutex // wake's write against release's close of wakeFD
}

const (
	ringReads   = 128  // reads queued on the device
	ringBufSize = 2048 // a packet of the device's MTU (1500) fits
	ringEntries = 512
	// user data: read i is i, the wake-up read ringWake, writes ringWrite.
	ringWake   = ringReads
	ringWrite  = ringReads + 1
	ringCancel = ringReads + 2
)

// leaked keeps a ring whose reads could not be cancelled reachable, so
// that the garbage collector never hands out the memory the kernel may
// still write into (not reached on Linux 5.19 and later).
var leaked atomic.Pointer[ring]

// errRingClosed is what Exchange returns once the ring is closed.
var errRingClosed = errors.New("tunclient: ring closed")

// newRing sets up a ring on the device queue dev (a non-blocking TUN
// descriptor) and queues its reads.
func newRing(dev int) (*ring, error) {
	q, err := uring.New(ringEntries, 0)
	if err != nil {
		return nil, fmt.Errorf("tunclient: %w", err)
	}
	r := &ring{q: q, wakeFD: -1}
	fail := func(err error) (*ring, error) { r.release(); return nil, err }
	if r.wakeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail(fmt.Errorf("tunclient: eventfd: %w", err))
	}
	// The ring holds the device's file itself (registered file 0): once
	// the Device is closed its descriptor number may belong to another
	// file, and no read or write queued later may reach that one.
	if err := q.RegisterFiles([]int32{int32(dev)}); err != nil {
		return fail(fmt.Errorf("tunclient: %w", err))
	}
	for i := range ringReads {
		r.readInto(i)
	}
	q.Queue(uring.SQE{Opcode: uring.OpRead, Fd: int32(r.wakeFD), Addr: addr(r.wakeBuf[:]), Len: 8, UserData: ringWake})
	if err := q.Submit(0); err != nil {
		return fail(fmt.Errorf("tunclient: %w", err))
	}
	return r, nil
}

// addr is b's address for the kernel; the caller keeps b alive until
// the operation completes.
func addr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// readInto queues a device read into buffer i.
func (r *ring) readInto(i int) {
	r.q.Queue(uring.SQE{Opcode: uring.OpRead, Flags: uring.FixedFile, Fd: 0, Addr: addr(r.bufs[i][:]), Len: ringBufSize, UserData: uint64(i)})
	r.reads++
}

// Exchange writes the packets of out (whole, in order; a full device
// queue drops one as a write would, without an error) and returns the
// packets read since the last call, waiting for at least one. The
// returned slices are valid until the next call; out may be reused once
// it returns.
func (r *ring) Exchange(out [][]byte) ([][]byte, error) {
	defer runtime.KeepAlive(out)
	for _, i := range r.rearm {
		r.readInto(i)
	}
	r.rearm = r.rearm[:0]
	for _, p := range out {
		if len(p) > 0 {
			r.q.Queue(uring.SQE{Opcode: uring.OpWrite, Flags: uring.FixedFile, Fd: 0, Addr: addr(p), Len: uint32(len(p)), UserData: ringWrite})
			r.writes++
		}
	}
	r.in = r.in[:0]
	for {
		if r.closed.Load() {
			return nil, errRingClosed
		}
		wait := 0
		if r.writes > 0 || len(r.in) == 0 {
			wait = 1
		}
		if r.q.Pending() > 0 || wait > 0 {
			if err := r.q.Submit(wait); err != nil {
				return nil, fmt.Errorf("tunclient: %w", err)
			}
		}
		if err := r.reap(); err != nil {
			return nil, err
		}
		if r.writes == 0 && len(r.in) > 0 {
			return r.in, nil
		}
	}
}

// reap takes the completions there are.
func (r *ring) reap() error {
	var err error
	r.q.Reap(func(c uring.CQE) {
		switch u := int(c.UserData); {
		case u == ringWrite:
			r.writes--
		case u == ringWake:
			err = errRingClosed
		case u == ringCancel:
			r.cancelDone, r.cancelRes = true, c.Res
		case u < ringReads && c.Res == -int32(syscall.ECANCELED):
			r.reads--
		case c.Res > 0:
			r.reads--
			r.in = append(r.in, r.bufs[u][:c.Res])
			r.rearm = append(r.rearm, u)
		case c.Res == -int32(syscall.EAGAIN) || c.Res == -int32(syscall.EINTR) || c.Res == 0:
			r.reads--
			r.rearm = append(r.rearm, u) // read again
		default:
			r.reads--
			err = fmt.Errorf("tunclient: read: %w", syscall.Errno(-c.Res))
		}
	})
	if err == nil && len(r.in) == 0 && len(r.rearm) > 0 && !r.releasing {
		// Reads that ended empty go straight back.
		for _, i := range r.rearm {
			r.readInto(i)
		}
		r.rearm = r.rearm[:0]
	}
	return err
}

// wake makes a waiting Exchange return errRingClosed; safe from any
// goroutine. The owner then calls release.
func (r *ring) wake() {
	if r.closed.Swap(true) {
		return
	}
	one := [8]byte{1}
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	if r.wakeFD >= 0 {
		_, _ = unix.Write(r.wakeFD, one[:])
	}
}

// release cancels the reads still queued (the kernel would otherwise
// still own their buffers) and frees the ring; only its owner, after
// Exchange returned.
func (r *ring) release() {
	r.releasing = true
	if r.reads > 0 {
		// Everything queued goes in first, so that every counted read
		// is the kernel's and completes once cancelled.
		if r.q.Submit(0) == nil {
			r.q.Queue(uring.SQE{Opcode: uring.OpAsyncCancel, OpFlags: uring.CancelAll, UserData: ringCancel})
			for tries := 0; r.reads > 0 && tries < 10_000; tries++ {
				if r.q.Submit(1) != nil {
					break
				}
				_ = r.reap()
				r.rearm = r.rearm[:0] // not read again
				if r.cancelDone && r.cancelRes < 0 {
					break // a kernel without IORING_ASYNC_CANCEL_ANY
				}
			}
		}
		if r.reads > 0 {
			// Reads may still land in the buffers: never free them.
			leaked.Store(r)
			return
		}
	}
	r.q.Close()
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	if r.wakeFD >= 0 {
		_ = unix.Close(r.wakeFD)
		r.wakeFD = -1
	}
}
