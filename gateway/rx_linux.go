package gateway

import (
	"errors"
	"reflect"
	"syscall"

	"github.com/lesismal/nbio"
)

// setSocketReading takes nc out of its poller's read interest (on false),
// or puts it back (on true).
//
// nbio has no call for it, so this reads the epoll descriptor of nc's
// poller from nbio's unexported fields, under nc's lock, and changes the
// registration as nbio's edge-triggered mode (the engine's, engine.go)
// registers it, write interest always on (poller_epoll.go, setRead and
// setReadWrite, which change nothing after the first registration in that
// mode). Turning reading back on reports the socket at once if input waits
// in it: EPOLL_CTL_MOD polls it. TestSocketReading fails when an nbio
// upgrade moves the field or changes the mode's registration.
func setSocketReading(nc *nbio.Conn, on bool) error {
	v := reflect.ValueOf(nc).Elem()
	p := v.FieldByName("p")
	if !p.IsValid() || p.Kind() != reflect.Pointer || p.IsNil() {
		return errNbioFields
	}
	epfd := p.Elem().FieldByName("epfd")
	if !epfd.IsValid() || epfd.Kind() != reflect.Int {
		return errNbioFields
	}
	nc.Lock()
	defer nc.Unlock()
	if closed, _ := nc.IsClosed(); closed {
		return nil
	}
	ev := uint32(syscall.EPOLLERR|syscall.EPOLLHUP|syscall.EPOLLRDHUP|syscall.EPOLLOUT) | nbio.EPOLLET
	if on {
		ev |= syscall.EPOLLPRI | syscall.EPOLLIN
	}
	fd := nc.Hash()
	err := syscall.EpollCtl(int(epfd.Int()), syscall.EPOLL_CTL_MOD, fd, &syscall.EpollEvent{Fd: int32(fd), Events: ev})
	if errors.Is(err, syscall.ENOENT) {
		return nil // not registered yet: the first input is stashed and comes back here
	}
	return err
}

// errNbioFields says that nbio's fields setSocketReading reads are gone.
var errNbioFields = errors.New("gateway: cannot change socket read interest: nbio's poller fields changed")
