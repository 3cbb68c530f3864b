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
)

// ring moves a device queue's packets through io_uring: ringReads reads
// stay queued on the device all the time, each into a buffer of its own,
// and one io_uring_enter(2) both hands the kernel the packets to write
// and waits for those read, so a busy engine makes one system call per
// batch of packets instead of one per packet each way. The reader
// goroutine of the queue alone uses it (Exchange); Close may come from
// any goroutine and wakes a waiting Exchange through an eventfd.
type ring struct {
	fd, wakeFD     int
	mem, sqeMem    []byte
	sqTail         *uint32
	sqMask         uint32
	sqArray        []uint32
	sqes           []ringSQE
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []ringCQE

	bufs    [ringReads][ringBufSize]byte
	in      [][]byte // the packets read, returned by Exchange
	rearm   []int    // buffers handed out by the last Exchange, to read into again
	pending int      // SQEs written, not yet submitted
	writes  int      // writes submitted, not yet completed
	reads   int      // device reads queued, not yet completed
	// The cancel of release: done, and its result.
	cancelDone bool
	cancelRes  int32
	releasing  bool // release runs: nothing is read again
	wakeBuf    [8]byte
	closed     atomic.Bool
	wakeMu     sync.Mutex // wake's write against release's close of wakeFD
}

type ringSQE struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len, opFlags  uint32
	userData      uint64
	_             [3]uint64
}

type ringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

const (
	ringReads   = 128  // reads queued on the device
	ringBufSize = 2048 // a packet of the device's MTU (1500) fits
	ringEntries = 512
	opRead      = 22          // IORING_OP_READ (Linux 5.6)
	opWrite     = 23          // IORING_OP_WRITE
	opCancel    = 14          // IORING_OP_ASYNC_CANCEL
	cancelAll   = 1<<0 | 1<<2 // IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY (Linux 5.19)
	// user data: read i is i, the wake-up read ringWake, writes ringWrite.
	devFixed   = -2 // queue's fd for the registered device file
	ringWake   = ringReads
	ringWrite  = ringReads + 1
	ringCancel = ringReads + 2
)

var (
	_ [64 - unsafe.Sizeof(ringSQE{})]byte
	_ [unsafe.Sizeof(ringSQE{}) - 64]byte
	_ [16 - unsafe.Sizeof(ringCQE{})]byte
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
	var p struct {
		sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
		resv                                                                   [3]uint32
		sqOff                                                                  [10]uint32
		cqOff                                                                  [10]uint32
	}
	fd, _, e := syscall.Syscall(unix.SYS_IO_URING_SETUP, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("tunclient: io_uring_setup: %w", e)
	}
	r := &ring{fd: int(fd), wakeFD: -1}
	fail := func(err error) (*ring, error) { r.release(); return nil, err }
	if p.features&1 == 0 { // IORING_FEAT_SINGLE_MMAP (Linux 5.4)
		return fail(errors.New("tunclient: io_uring without a single ring mapping"))
	}
	// sqOff: head tail mask entries flags dropped array; cqOff: head tail mask entries overflow cqes.
	size := max(int(p.sqOff[6]+p.sqEntries*4), int(p.cqOff[5]+p.cqEntries*16))
	var err error
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	if r.mem, err = unix.Mmap(r.fd, 0, size, prot, flags); err != nil {
		return fail(fmt.Errorf("tunclient: io_uring rings: %w", err))
	}
	if r.sqeMem, err = unix.Mmap(r.fd, 0x10000000, int(p.sqEntries)*64, prot, flags); err != nil {
		return fail(fmt.Errorf("tunclient: io_uring SQEs: %w", err))
	}
	base := unsafe.Pointer(&r.mem[0])
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff[1]))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff[2]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff[6])), p.sqEntries)
	r.sqes = unsafe.Slice((*ringSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff[0]))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff[1]))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff[2]))
	r.cqes = unsafe.Slice((*ringCQE)(unsafe.Add(base, p.cqOff[5])), p.cqEntries)
	if r.wakeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail(fmt.Errorf("tunclient: eventfd: %w", err))
	}
	// The ring holds the device's file itself (a registered file): once
	// the Device is closed its descriptor number may belong to another
	// file, and no read or write queued later may reach that one.
	files := [1]int32{int32(dev)}
	if _, _, e := syscall.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), 2 /* IORING_REGISTER_FILES */, uintptr(unsafe.Pointer(&files[0])), 1, 0, 0); e != 0 {
		return fail(fmt.Errorf("tunclient: io_uring_register: %w", e))
	}
	for i := range ringReads {
		r.readInto(i)
	}
	r.queue(opRead, r.wakeFD, unsafe.Pointer(&r.wakeBuf[0]), 8, ringWake)
	if err := r.enter(0); err != nil {
		return fail(err)
	}
	return r, nil
}

// readInto queues a device read into buffer i.
func (r *ring) readInto(i int) {
	r.queue(opRead, devFixed, unsafe.Pointer(&r.bufs[i][0]), ringBufSize, uint64(i))
	r.reads++
}

// queue writes one SQE; enter submits it.
func (r *ring) queue(op uint8, fd int, p unsafe.Pointer, n int, user uint64) {
	if r.pending == len(r.sqes) {
		// The submission queue is full (a batch that made many packets):
		// hand the kernel what is there first. An error comes back from
		// the next enter.
		_ = r.enter(0)
	}
	tail := *r.sqTail + uint32(r.pending)
	idx := tail & r.sqMask
	var flags uint8
	if fd == devFixed {
		fd, flags = 0, 1 // IOSQE_FIXED_FILE: registered file 0, the device
	}
	r.sqes[idx] = ringSQE{opcode: op, flags: flags, fd: int32(fd), addr: uint64(uintptr(p)), len: uint32(n), userData: user}
	r.sqArray[idx] = idx
	r.pending++
}

// enter submits what is queued and waits for wait completions.
func (r *ring) enter(wait int) error {
	atomic.StoreUint32(r.sqTail, *r.sqTail+uint32(r.pending))
	// In the ring now: a later enter submits what this one leaves.
	toSubmit := r.pending
	r.pending = 0
	for {
		flags := uintptr(0)
		if wait > 0 {
			flags = 1 // IORING_ENTER_GETEVENTS
		}
		n, _, e := syscall.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), flags, 0, 0)
		switch e {
		case 0:
			toSubmit -= min(int(n), toSubmit)
			if toSubmit == 0 {
				return nil
			}
		case syscall.EINTR, syscall.EAGAIN, syscall.EBUSY:
		default:
			return fmt.Errorf("tunclient: io_uring_enter: %w", e)
		}
	}
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
			r.queue(opWrite, devFixed, unsafe.Pointer(&p[0]), len(p), ringWrite)
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
		if r.pending > 0 || wait > 0 {
			if err := r.enter(wait); err != nil {
				return nil, err
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
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	var err error
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		switch u := int(c.userData); {
		case u == ringWrite:
			r.writes--
		case u == ringWake:
			err = errRingClosed
		case u == ringCancel:
			r.cancelDone, r.cancelRes = true, c.res
		case u < ringReads && c.res == -int32(syscall.ECANCELED):
			r.reads--
		case c.res > 0:
			r.reads--
			r.in = append(r.in, r.bufs[u][:c.res])
			r.rearm = append(r.rearm, u)
		case c.res == -int32(syscall.EAGAIN) || c.res == -int32(syscall.EINTR) || c.res == 0:
			r.reads--
			r.rearm = append(r.rearm, u) // read again
		default:
			r.reads--
			err = fmt.Errorf("tunclient: read: %w", syscall.Errno(-c.res))
		}
	}
	atomic.StoreUint32(r.cqHead, head)
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
	if r.mem != nil && r.reads > 0 {
		// Everything queued goes in first, so that every counted read
		// is the kernel's and completes once cancelled.
		if r.enter(0) == nil {
			r.queue(opCancel, 0, nil, 0, ringCancel)
			r.sqes[(*r.sqTail)&r.sqMask].opFlags = cancelAll
			for tries := 0; r.reads > 0 && tries < 10_000; tries++ {
				if r.enter(1) != nil {
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
	for _, m := range [][]byte{r.sqeMem, r.mem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqeMem, r.mem = nil, nil
	if r.fd >= 0 {
		_ = unix.Close(r.fd)
		r.fd = -1
	}
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	if r.wakeFD >= 0 {
		_ = unix.Close(r.wakeFD)
		r.wakeFD = -1
	}
}
