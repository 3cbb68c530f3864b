//go:build !linux

package gateway

import (
	"errors"

	"github.com/lesismal/nbio"
)

// setSocketReading is implemented for Linux (epoll) only: elsewhere a
// held connection's input goes to its stash, up to maxStash.
func setSocketReading(*nbio.Conn, bool) error {
	return errors.ErrUnsupported
}
