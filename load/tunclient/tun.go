package tunclient

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

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
	name string
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
		devs = append(devs, &Device{f: os.NewFile(uintptr(fd), "/dev/net/tun:"+name), name: ifr.Name()})
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
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("tunclient: close %s: %w", d.name, err)
	}
	return nil
}
