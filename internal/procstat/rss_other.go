//go:build !linux

package procstat

// RSS is not available on this system.
func RSS(pid int) (int64, error) { return 0, ErrUnavailable }
