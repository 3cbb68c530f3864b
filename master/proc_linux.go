package master

import (
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gatework/gatework/internal/procstat"
)

// sysProcAttr makes a child die with the master.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// closeOnExec marks every descriptor of the process above standard error
// close-on-exec, so that a child started next inherits only its standard
// input, output and error (os/exec dup2s those, and any ExtraFiles, into
// place in the child whatever their flags here). It is a safety net:
// every descriptor this program creates is close-on-exec from the start
// (the gateway's socket engine is the one that needed help; see
// gateway/cloexec.go). It does not close the race with a descriptor
// created without the flag between this call and the fork; that is fixed
// only where such a descriptor is made. close_range(2) does it in one call
// (Linux 5.11); older kernels get a look through /proc/self/fd.
func closeOnExec() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// RSS returns the resident set size of process pid in bytes, read from
// /proc; 0 and an error when it cannot be read.
func RSS(pid int) (int64, error) { return procstat.RSS(pid) }
