package gateway

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendRing submits many sockets' sends with one io_uring_enter(2): on this
// kind of VM a system call's entry and exit cost about as much as a small
// TCP send itself, so a flush of N connections that made N write(2)s makes
// one call instead (docs/benchmarks.md, "Batched socket writes").
//
// Only the shard's flusher goroutine uses its ring. Every send is
// MSG_DONTWAIT: it completes, sent whole, in part or with EAGAIN, inside
// the submitting call, so no buffer is still the kernel's when send
// returns. The ring's descriptor is close-on-exec (io_uring_setup makes
// it so).
type sendRing struct {
	fd      int
	entries uint32
	mem     []byte // SQ ring, and the CQ ring when the kernel shares one mapping
	cqMem   []byte // the CQ ring's own mapping, else nil
	sqeMem  []byte

	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []uringSQE
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []uringCQE
}

// uringSQE is struct io_uring_sqe (64 bytes), as a send uses it.
type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	msgFlags    uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	_           uint64
}

// uringCQE is struct io_uring_cqe (16 bytes).
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// uringParams is struct io_uring_params.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

const (
	uringOpSend         = 26 // IORING_OP_SEND (Linux 5.6)
	uringSetupSubmitAll = 1 << 7
	uringSetupCoopTask  = 1 << 8
	uringFeatSingleMmap = 1 << 0
	uringEnterGetEvents = 1 << 0
	uringOffSQRing      = 0
	uringOffCQRing      = 0x8000000
	uringOffSQEs        = 0x10000000
	sendRingEntries     = 256
	sendFlags           = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
	uringSQESize        = unsafe.Sizeof(uringSQE{})
	uringCQESize        = unsafe.Sizeof(uringCQE{})
)

// The kernel's layouts: 64-byte SQEs, 16-byte CQEs (a build fails here
// if the structs above drift).
var (
	_ [64 - uringSQESize]byte
	_ [uringSQESize - 64]byte
	_ [16 - uringCQESize]byte
	_ [uringCQESize - 16]byte
)

// newSendRing sets up a ring, or returns an error when the kernel has no
// io_uring or refuses it (io_uring_disabled, a seccomp filter): the
// flusher then writes each socket with write(2).
func newSendRing() (*sendRing, error) {
	var p uringParams
	p.flags = uringSetupSubmitAll | uringSetupCoopTask
	fd, _, e := syscall.Syscall(unix.SYS_IO_URING_SETUP, sendRingEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e == syscall.EINVAL { // a kernel older than 5.19 knows neither flag
		p = uringParams{}
		fd, _, e = syscall.Syscall(unix.SYS_IO_URING_SETUP, sendRingEntries, uintptr(unsafe.Pointer(&p)), 0)
	}
	if e != 0 {
		return nil, fmt.Errorf("gateway: io_uring_setup: %w", e)
	}
	r := &sendRing{fd: int(fd), entries: p.sqEntries}
	if err := r.mmap(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *sendRing) mmap(p *uringParams) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(uringCQESize))
	single := p.features&uringFeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	if r.mem, err = unix.Mmap(r.fd, uringOffSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("gateway: io_uring SQ ring: %w", err)
	}
	cq := r.mem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, uringOffCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("gateway: io_uring CQ ring: %w", err)
		}
		cq = r.cqMem
	}
	if r.sqeMem, err = unix.Mmap(r.fd, uringOffSQEs, int(p.sqEntries)*int(uringSQESize), prot, flags); err != nil {
		return fmt.Errorf("gateway: io_uring SQEs: %w", err)
	}
	sq := unsafe.Pointer(&r.mem[0])
	r.sqTail = (*uint32)(unsafe.Add(sq, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(sq, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(sq, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	cqp := unsafe.Pointer(&cq[0])
	r.cqHead = (*uint32)(unsafe.Add(cqp, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(cqp, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(cqp, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Add(cqp, p.cqOff.cqes)), p.cqEntries)
	return nil
}

// size is the most sends one call to send takes.
func (r *sendRing) size() int { return int(r.entries) }

// send sends bufs[i] on socket fds[i], all in one system call (at most
// size() of them), and stores in res[i] the bytes sent or a negative
// errno (-EAGAIN: nothing fitted). Every buffer is free again when it
// returns. The caller keeps each descriptor open meanwhile.
func (r *sendRing) send(fds []int, bufs [][]byte, res []int32) error {
	n := len(fds)
	tail := *r.sqTail // only this goroutine writes the tail
	for i := range n {
		idx := (tail + uint32(i)) & r.sqMask
		b := bufs[i]
		r.sqes[idx] = uringSQE{
			opcode:   uringOpSend,
			fd:       int32(fds[i]),
			addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))),
			len:      uint32(len(b)),
			msgFlags: sendFlags,
			userData: uint64(i),
		}
		r.sqArray[idx] = idx
	}
	atomic.StoreUint32(r.sqTail, tail+uint32(n))
	defer runtime.KeepAlive(bufs) // the kernel reads them through raw addresses
	done, toSubmit := 0, n
	for done < n {
		m, _, e := syscall.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(n-done), uringEnterGetEvents, 0, 0)
		switch e {
		case 0:
			toSubmit -= min(int(m), toSubmit)
		case syscall.EINTR, syscall.EAGAIN, syscall.EBUSY:
			// retried: the kernel took none of what it refused
		default:
			// Not reached with a ring only this goroutine uses. The
			// sends not completed may still read their buffers: the
			// caller must give the ring up and leak them to the GC.
			return fmt.Errorf("gateway: io_uring_enter: %w", e)
		}
		head := atomic.LoadUint32(r.cqHead)
		ctail := atomic.LoadUint32(r.cqTail)
		for ; head != ctail; head++ {
			c := &r.cqes[head&r.cqMask]
			if i := int(c.userData); i < n {
				res[i] = c.res
				done++
			}
		}
		atomic.StoreUint32(r.cqHead, head)
	}
	return nil
}

func (r *sendRing) close() {
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.mem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqMem, r.mem = nil, nil, nil
	if r.fd >= 0 {
		_ = syscall.Close(r.fd)
		r.fd = -1
	}
}
