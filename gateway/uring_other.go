//go:build !linux

package gateway

import "errors"

// sendRing batches socket sends with io_uring on Linux; elsewhere the
// flusher writes each socket with a call of its own.
type sendRing struct{}

func newSendRing() (*sendRing, error) { return nil, errors.New("gateway: io_uring is Linux only") }

func (r *sendRing) size() int { return 0 }

func (r *sendRing) send(fds []int, bufs [][]byte, res []int32) error {
	return errors.New("gateway: io_uring is Linux only")
}

func (r *sendRing) close() {}
