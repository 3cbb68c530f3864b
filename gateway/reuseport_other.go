//go:build !unix

package gateway

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// errNoReusePort: SO_REUSEPORT is for Unix systems only here.
var errNoReusePort = errors.New("gateway: SO_REUSEPORT is not supported on this system")

func reusePortControl(_, _ string, _ syscall.RawConn) error { return errNoReusePort }

// ReserveAddr is not supported on this system: see the Unix version.
func ReserveAddr(_, _ string) (net.Addr, io.Closer, error) { return nil, nil, errNoReusePort }
