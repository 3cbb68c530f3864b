//go:build !linux

package gateway

// closeOnExecPollers does nothing where nbio polls with kqueue: a kqueue
// is not inherited by a child (fork(2) does not copy it).
func closeOnExecPollers() error { return nil }
