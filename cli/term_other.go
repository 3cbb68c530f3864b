//go:build !linux

package cli

// makeRaw: line editing is only available on Linux; elsewhere the panel
// reads plain lines.
func makeRaw(fd int) (restore func(), ok bool) { return nil, false }
