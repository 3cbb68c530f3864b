//go:build !linux

package master

import (
	"syscall"

	"github.com/gatework/gatework/internal/procstat"
)

// sysProcAttr: without Pdeathsig, children notice the master's death by
// the EOF of their standard input.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// closeOnExec does nothing here: the descriptors this program creates are
// close-on-exec from the start (see the Linux version).
func closeOnExec() {}

// RSS is not available on this system.
func RSS(pid int) (int64, error) { return procstat.RSS(pid) }
