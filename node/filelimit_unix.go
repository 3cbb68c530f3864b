//go:build unix

package node

import "syscall"

// openFileLimit returns the process's limit of open files (the soft
// RLIMIT_NOFILE), or 0 if unknown.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}
