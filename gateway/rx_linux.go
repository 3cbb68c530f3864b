package gateway

import (
	"errors"
	"reflect"
	"syscall"

	"github.com/lesismal/nbio"
)

// setSocketReading takes nc out of its poller's read interest (on false),
// or puts it back (on true), keeping its write interest as the engine
// left it.
//
// nbio has no call for it, so this reads the epoll descriptor of nc's
// poller and whether nc waits to write (nbio's own write-interest flag)
// from nbio's unexported fields, under nc's lock, which nbio holds when it
// changes that interest itself, and changes the registration as nbio's
// level-triggered mode registers it (poller_epoll.go, setRead and
// setReadWrite). TestSocketReading fails when an nbio upgrade moves
// those fields. When nbio later turns write interest on or off it also
// turns reading back on: the read path then stashes what arrives and
// calls this again (Server.holdInput).
func setSocketReading(nc *nbio.Conn, on bool) error {
	v := reflect.ValueOf(nc).Elem()
	p := v.FieldByName("p")
	w := v.FieldByName("isWAdded")
	if !p.IsValid() || p.Kind() != reflect.Pointer || p.IsNil() || !w.IsValid() || w.Kind() != reflect.Bool {
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
	ev := uint32(syscall.EPOLLERR | syscall.EPOLLHUP | syscall.EPOLLRDHUP)
	if on {
		ev |= syscall.EPOLLPRI | syscall.EPOLLIN
	}
	if w.Bool() {
		ev |= syscall.EPOLLOUT
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
