// Package uring is the small part of Linux's io_uring that gatework uses:
// a ring one goroutine fills with submission entries, submits with one
// io_uring_enter(2) and reaps. The gateway's flusher sends many sockets'
// frames with it (gateway/uring_linux.go) and gwload's TUN client moves
// its packets with it (load/tunclient/ring_linux.go).
//
// A Ring is not safe for concurrent use: its owner goroutine alone calls
// its methods. Its descriptor is close-on-exec (io_uring_setup makes it
// so).
package uring

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Operations and flags this project uses (include/uapi/linux/io_uring.h).
const (
	OpAsyncCancel = 14 // IORING_OP_ASYNC_CANCEL
	OpRead        = 22 // IORING_OP_READ (Linux 5.6)
	OpWrite       = 23 // IORING_OP_WRITE
	OpSend        = 26 // IORING_OP_SEND (Linux 5.6)

	SetupSubmitAll = 1 << 7 // IORING_SETUP_SUBMIT_ALL (Linux 5.18)
	SetupCoopTask  = 1 << 8 // IORING_SETUP_COOP_TASKRUN (Linux 5.19)

	FixedFile = 1 << 0 // IOSQE_FIXED_FILE: Fd is an index into the registered files

	CancelAll = 1<<0 | 1<<2 // IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY (Linux 5.19)
)

// SQE is struct io_uring_sqe (64 bytes), with the fields these operations
// use. OpFlags is msg_flags for a send, cancel_flags for a cancel.
type SQE struct {
	Opcode   uint8
	Flags    uint8
	Ioprio   uint16
	Fd       int32
	Off      uint64
	Addr     uint64
	Len      uint32
	OpFlags  uint32
	UserData uint64
	_        [3]uint64
}

// CQE is struct io_uring_cqe (16 bytes): Res is the operation's result
// (bytes, or a negative errno).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// The kernel's layouts (a build fails here if the structs drift).
var (
	_ [64 - unsafe.Sizeof(SQE{})]byte
	_ [unsafe.Sizeof(SQE{}) - 64]byte
	_ [16 - unsafe.Sizeof(CQE{})]byte
	_ [unsafe.Sizeof(CQE{}) - 16]byte
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// Ring is an io_uring with its submission and completion queues mapped.
type Ring struct {
	fd                int
	mem, cqMem, sqMem []byte // rings (one mapping, or SQ and CQ apart) and SQEs
	sqTail            *uint32
	sqMask            uint32
	sqArray           []uint32
	sqes              []SQE
	cqHead, cqTail    *uint32
	cqMask            uint32
	cqes              []CQE
	pending           int // queued, not yet handed to the kernel
}

// New sets up a ring of entries submission entries with setup flags;
// a kernel that refuses the flags (older than 5.19) gets none. It fails
// where the kernel has no io_uring or refuses it (kernel.io_uring_disabled,
// a seccomp filter).
func New(entries, flags uint32) (*Ring, error) {
	p := params{flags: flags}
	fd, _, e := syscall.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e == syscall.EINVAL && flags != 0 {
		p = params{}
		fd, _, e = syscall.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	}
	if e != 0 {
		return nil, fmt.Errorf("uring: io_uring_setup: %w", e)
	}
	r := &Ring{fd: int(fd)}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mmap(p *params) error {
	const singleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP (Linux 5.4)
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(CQE{})))
	single := p.features&singleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	if r.mem, err = unix.Mmap(r.fd, 0, sqSize, prot, flags); err != nil { // IORING_OFF_SQ_RING
		return fmt.Errorf("uring: SQ ring: %w", err)
	}
	cq := r.mem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, 0x8000000, cqSize, prot, flags); err != nil { // IORING_OFF_CQ_RING
			return fmt.Errorf("uring: CQ ring: %w", err)
		}
		cq = r.cqMem
	}
	if r.sqMem, err = unix.Mmap(r.fd, 0x10000000, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})), prot, flags); err != nil { // IORING_OFF_SQES
		return fmt.Errorf("uring: SQEs: %w", err)
	}
	sq := unsafe.Pointer(&r.mem[0])
	r.sqTail = (*uint32)(unsafe.Add(sq, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(sq, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(sq, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqMem[0])), p.sqEntries)
	cqp := unsafe.Pointer(&cq[0])
	r.cqHead = (*uint32)(unsafe.Add(cqp, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(cqp, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(cqp, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*CQE)(unsafe.Add(cqp, p.cqOff.cqes)), p.cqEntries)
	return nil
}

// Entries is the size of the submission queue.
func (r *Ring) Entries() int { return len(r.sqes) }

// Pending is the number of entries queued and not yet submitted.
func (r *Ring) Pending() int { return r.pending }

// Queue adds e to the submission queue; Submit hands it to the kernel.
// A full queue is submitted first (an error then comes back from the
// next Submit).
func (r *Ring) Queue(e SQE) {
	if r.pending == len(r.sqes) {
		_ = r.Submit(0)
	}
	idx := (*r.sqTail + uint32(r.pending)) & r.sqMask
	r.sqes[idx] = e
	r.sqArray[idx] = idx
	r.pending++
}

// Submit hands the queued entries to the kernel and, with wait > 0,
// waits until at least wait completions are there to reap.
func (r *Ring) Submit(wait int) error {
	atomic.StoreUint32(r.sqTail, *r.sqTail+uint32(r.pending))
	toSubmit := r.pending // in the ring now: a later Submit takes what this one leaves
	r.pending = 0
	for {
		var flags uintptr
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
			// again: the kernel took none of what it refused
		default:
			return fmt.Errorf("uring: io_uring_enter: %w", e)
		}
	}
}

// Reap calls f for every completion there is, in order, and frees them.
func (r *Ring) Reap(f func(CQE)) {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		f(r.cqes[head&r.cqMask])
	}
	atomic.StoreUint32(r.cqHead, head)
}

// RegisterFiles registers fds as the ring's fixed files (entries with
// FixedFile name them by index): the ring holds the files themselves,
// whatever later happens to the descriptor numbers.
func (r *Ring) RegisterFiles(fds []int32) error {
	_, _, e := syscall.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), 2, // IORING_REGISTER_FILES
		uintptr(unsafe.Pointer(unsafe.SliceData(fds))), uintptr(len(fds)), 0, 0)
	if e != 0 {
		return fmt.Errorf("uring: io_uring_register: %w", e)
	}
	return nil
}

// Close unmaps the ring and closes it; operations still queued in the
// kernel are cancelled. Close is idempotent.
func (r *Ring) Close() {
	for _, m := range [][]byte{r.sqMem, r.cqMem, r.mem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqMem, r.cqMem, r.mem = nil, nil, nil
	if r.fd >= 0 {
		_ = syscall.Close(r.fd)
		r.fd = -1
	}
}
