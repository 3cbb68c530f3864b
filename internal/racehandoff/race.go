//go:build race

package racehandoff

import (
	"sync"

	"github.com/lesismal/nbio"
)

var handoff sync.Mutex

// Release marks the calling goroutine as done setting up a connection
// that a poller will read.
func Release() {
	handoff.Lock()
	//nolint:staticcheck // an empty critical section is the point
	handoff.Unlock()
}

// Hook makes every read of e's pollers acquire what Release published. It
// must be called before e.Start.
func Hook(e *nbio.Engine) {
	e.OnReadBufferAlloc(func(c *nbio.Conn) *[]byte {
		Release()
		return e.PollerBufferPtr(c)
	})
}
