package master

import (
	"syscall"

	"github.com/gatework/gatework/internal/procstat"
)

// sysProcAttr makes a child die with the master.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// RSS returns the resident set size of process pid in bytes, read from
// /proc; 0 and an error when it cannot be read.
func RSS(pid int) (int64, error) { return procstat.RSS(pid) }
