package tunclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// TCP header flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
)

// Header sizes: IPv4 without options, TCP without options, and what
// the options we send add: MSS (in a SYN) and timestamps (two no-ops
// and the 10-byte option, RFC 7323).
const (
	ipHeaderLen  = 20
	tcpHeaderLen = 20
	mssOptLen    = 4
	tsOptLen     = 12
)

// tsOption is a TCP timestamps option (RFC 7323): val is the sender's
// clock, ecr the last val it received from its peer; ok tells whether
// the option is there.
type tsOption struct {
	val, ecr uint32
	ok       bool
}

// errNotTCP is returned by parseSegment for a packet that is not an
// unfragmented IPv4 TCP segment: the engine ignores it.
var errNotTCP = errors.New("tunclient: not an IPv4 TCP segment")

// segment is one parsed IPv4 TCP segment; payload aliases the packet.
type segment struct {
	src, dst         uint32 // IPv4 addresses, host order
	srcPort, dstPort uint16
	seq, ack         uint32
	flags            uint8
	window           uint16
	mss              uint16 // the MSS option of a SYN; 0 if absent
	ts               tsOption
	payload          []byte
}

// parseSegment parses an IPv4 packet carrying a TCP segment. It checks
// the lengths, not the checksums (the kernel computed them for what it
// hands to the tun device; checksumOK verifies them where wanted).
func parseSegment(p []byte) (segment, error) {
	var s segment
	if len(p) < ipHeaderLen || p[0]>>4 != 4 {
		return s, errNotTCP
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < ipHeaderLen || total < ihl || total > len(p) {
		return s, fmt.Errorf("tunclient: bad IPv4 lengths (header %d, total %d, packet %d)", ihl, total, len(p))
	}
	if p[9] != 6 { // protocol: TCP
		return s, errNotTCP
	}
	if frag := binary.BigEndian.Uint16(p[6:8]); frag&0x3fff != 0 { // MF or an offset
		return s, errNotTCP
	}
	s.src = binary.BigEndian.Uint32(p[12:16])
	s.dst = binary.BigEndian.Uint32(p[16:20])
	t := p[ihl:total]
	if len(t) < tcpHeaderLen {
		return s, fmt.Errorf("tunclient: TCP segment of %d bytes", len(t))
	}
	off := int(t[12]>>4) * 4
	if off < tcpHeaderLen || off > len(t) {
		return s, fmt.Errorf("tunclient: bad TCP data offset %d (segment %d)", off, len(t))
	}
	s.srcPort = binary.BigEndian.Uint16(t[0:2])
	s.dstPort = binary.BigEndian.Uint16(t[2:4])
	s.seq = binary.BigEndian.Uint32(t[4:8])
	s.ack = binary.BigEndian.Uint32(t[8:12])
	s.flags = t[13]
	s.window = binary.BigEndian.Uint16(t[14:16])
	for o := t[tcpHeaderLen:off]; len(o) > 0; {
		switch o[0] {
		case 0: // end of options
			o = nil
		case 1: // no-op
			o = o[1:]
		default:
			if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
				return s, errors.New("tunclient: bad TCP option")
			}
			switch {
			case o[0] == 2 && o[1] == 4:
				s.mss = binary.BigEndian.Uint16(o[2:4])
			case o[0] == 8 && o[1] == 10:
				s.ts = tsOption{val: binary.BigEndian.Uint32(o[2:6]), ecr: binary.BigEndian.Uint32(o[6:10]), ok: true}
			}
			o = o[o[1]:]
		}
	}
	s.payload = t[off:]
	return s, nil
}

// appendSegment appends one IPv4 TCP packet from src:sport to dst:dport
// to b, with both checksums, and returns it. mss > 0 adds the MSS option
// (for a SYN), ts.ok the timestamps option.
func appendSegment(b []byte, src, dst uint32, sport, dport uint16, seq, ack uint32, flags uint8, window, mss uint16, ts tsOption, payload []byte) []byte {
	th := tcpHeaderLen
	if mss > 0 {
		th += mssOptLen
	}
	if ts.ok {
		th += tsOptLen
	}
	total := ipHeaderLen + th + len(payload)
	start := len(b)
	b = append(b, make([]byte, ipHeaderLen+th)...)
	b = append(b, payload...)
	p := b[start:]
	p[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(p[2:4], uint16(total))
	binary.BigEndian.PutUint16(p[6:8], 0x4000) // don't fragment
	p[8] = 64                                  // TTL
	p[9] = 6                                   // TCP
	binary.BigEndian.PutUint32(p[12:16], src)
	binary.BigEndian.PutUint32(p[16:20], dst)
	binary.BigEndian.PutUint16(p[10:12], ^checksumAdd(0, p[:ipHeaderLen]))
	t := p[ipHeaderLen:]
	binary.BigEndian.PutUint16(t[0:2], sport)
	binary.BigEndian.PutUint16(t[2:4], dport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12] = uint8(th/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:16], window)
	opt := t[tcpHeaderLen:th]
	if mss > 0 {
		opt[0], opt[1] = 2, 4
		binary.BigEndian.PutUint16(opt[2:4], mss)
		opt = opt[mssOptLen:]
	}
	if ts.ok {
		opt[0], opt[1], opt[2], opt[3] = 1, 1, 8, 10
		binary.BigEndian.PutUint32(opt[4:8], ts.val)
		binary.BigEndian.PutUint32(opt[8:12], ts.ecr)
	}
	binary.BigEndian.PutUint16(t[16:18], ^tcpChecksum(src, dst, t))
	return b
}

// tcpChecksum returns the folded one's-complement sum of the TCP pseudo
// header and segment t (its checksum field counted as it is).
func tcpChecksum(src, dst uint32, t []byte) uint16 {
	var ph [12]byte
	binary.BigEndian.PutUint32(ph[0:4], src)
	binary.BigEndian.PutUint32(ph[4:8], dst)
	ph[9] = 6
	binary.BigEndian.PutUint16(ph[10:12], uint16(len(t)))
	return checksumAdd(checksumAdd(0, ph[:]), t)
}

// checksumAdd adds b to the folded one's-complement sum sum (RFC 1071).
func checksumAdd(sum uint16, b []byte) uint16 {
	s := uint64(sum)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		s += v>>48 + v>>32&0xffff + v>>16&0xffff + v&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// checksumOK reports whether packet p (IPv4 + TCP) has valid IPv4 and
// TCP checksums.
func checksumOK(p []byte) bool {
	if len(p) < ipHeaderLen {
		return false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < ipHeaderLen || total < ihl || total > len(p) {
		return false
	}
	if checksumAdd(0, p[:ihl]) != 0xffff {
		return false
	}
	src := binary.BigEndian.Uint32(p[12:16])
	dst := binary.BigEndian.Uint32(p[16:20])
	return tcpChecksum(src, dst, p[ihl:total]) == 0xffff
}

// seqLT reports whether sequence number a is before b (modulo 2^32).
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }

// seqLE reports whether sequence number a is before or equal to b.
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }

// Link is where the engine reads and writes IPv4 packets: a TUN queue
// (Device), or in tests one wrapped to drop or reorder.
type Link interface {
	// ReadPacket reads one packet into b and returns its length; it
	// returns an error once the link is closed.
	ReadPacket(b []byte) (int, error)
	// WritePacket writes one packet; p is not retained.
	WritePacket(p []byte) error
}

// Device is one queue of a TUN device (IFF_TUN, no packet information
// header): each read returns one IPv4 or IPv6 packet the kernel routed to
// the device, each write hands one packet to the kernel as if it arrived
// on the device.
type Device struct {
	f    *os.File
	fd   int // f's descriptor (f.Fd() would make it blocking)
	name string
	// mu guards closed and ring: the reader sets its ring up only while
	// the device is open, so the descriptor it registers is this one.
	mu     sync.Mutex
	closed bool
	ring   *ring // the reader's io_uring on this queue (ring_linux.go), or nil
}

// startRing sets up the queue's ring for its reader, or returns nil (the
// device is closed, or the kernel has no io_uring).
func (d *Device) startRing() *ring {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	r, err := newRing(d.fd)
	if err != nil {
		return nil
	}
	d.ring = r
	return r
}

// OpenTUN opens queues queues of the TUN device name in the calling
// process's network namespace, creating it if it does not exist (a
// device made by `ip tuntap add ... mode tun multi_queue` is attached
// to). More than one queue needs IFF_MULTI_QUEUE: the kernel spreads the
// flows over the queues by hash. The device must then be given an address
// and set up (`ip addr add`, `ip link set up`) unless it already is.
func OpenTUN(name string, queues int) ([]*Device, error) {
	if queues < 1 {
		queues = 1
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	var devs []*Device
	for range queues {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll(devs)
			return nil, fmt.Errorf("tunclient: open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			closeAll(devs)
			return nil, fmt.Errorf("tunclient: device name %q: %w", name, err)
		}
		ifr.SetUint16(flags)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		if errors.Is(err, unix.EINVAL) && flags&unix.IFF_MULTI_QUEUE == 0 {
			// A device made multi-queue takes only multi-queue opens.
			flags |= unix.IFF_MULTI_QUEUE
			ifr.SetUint16(flags)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			closeAll(devs)
			return nil, fmt.Errorf("tunclient: TUNSETIFF %s: %w", name, err)
		}
		// Non-blocking, so the file is driven by Go's poller and Close
		// wakes a pending Read.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			closeAll(devs)
			return nil, fmt.Errorf("tunclient: %s: set non-blocking: %w", name, err)
		}
		devs = append(devs, &Device{f: os.NewFile(uintptr(fd), "/dev/net/tun:"+name), fd: fd, name: ifr.Name()})
	}
	return devs, nil
}

func closeAll(devs []*Device) {
	for _, d := range devs {
		_ = d.Close()
	}
}

// Name returns the device's name.
func (d *Device) Name() string { return d.name }

// ReadPacket reads one packet.
func (d *Device) ReadPacket(b []byte) (int, error) {
	n, err := d.f.Read(b)
	if err != nil {
		return 0, fmt.Errorf("tunclient: read %s: %w", d.name, err)
	}
	return n, nil
}

// WritePacket writes one packet. A full device queue drops the packet
// (ENOBUFS) without an error: TCP's retransmission covers it.
func (d *Device) WritePacket(p []byte) error {
	if _, err := d.f.Write(p); err != nil && !errors.Is(err, unix.ENOBUFS) {
		return fmt.Errorf("tunclient: write %s: %w", d.name, err)
	}
	return nil
}

// Close closes this queue; a blocked ReadPacket returns an error. A
// device the kernel created for OpenTUN (not persistent) disappears with
// its last queue.
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	r := d.ring
	d.mu.Unlock()
	if r != nil {
		r.wake() // its reader returns and releases it
	}
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("tunclient: close %s: %w", d.name, err)
	}
	return nil
}
