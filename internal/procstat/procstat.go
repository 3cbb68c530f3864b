// Package procstat reads what the operating system says of a process: its
// resident memory. On systems without /proc it reports ErrUnavailable.
package procstat

import "errors"

// ErrUnavailable is returned where the system does not tell.
var ErrUnavailable = errors.New("procstat: not available")
