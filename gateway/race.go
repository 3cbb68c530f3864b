//go:build race

package gateway

import (
	"sync"

	"github.com/lesismal/nbio"
)

// The socket engine hands a new connection from its accept goroutine to a
// poller goroutine through epoll, which the race detector cannot see, so
// it reports the engine's own hand-over as a race. Under -race only, the
// gateway adds an edge it can see: a release after the accept goroutine
// is done with the connection and an acquire before each read.
var handoff sync.Mutex

func engineHandoff() {
	handoff.Lock()
	//nolint:staticcheck // an empty critical section is the point
	handoff.Unlock()
}

func raceReadHook(e *nbio.Engine) {
	e.OnReadBufferAlloc(func(c *nbio.Conn) *[]byte {
		engineHandoff()
		return e.PollerBufferPtr(c)
	})
}
