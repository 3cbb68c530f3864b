//go:build !linux

package master

import "syscall"

// sysProcAttr: without Pdeathsig, children notice the master's death by
// the EOF of their standard input.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// RSS is not available on this system.
func RSS(pid int) (int64, error) { return 0, errNoRSS }
