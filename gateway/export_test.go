package gateway

import "time"

// Test helpers shared with the external test package (gateway_test).
var (
	// StartTestBus starts an embedded NATS and returns a connection to
	// it; both end with the test.
	StartTestBus = testBus
	// EchoWorker answers every event batch on a connection, echoing
	// messages to their sender.
	EchoWorker = echoWorker
)

// SkipsCloseEvents reports whether s leaves close events out now (every
// worker it heard from has no OnClose: closeevents.go).
func SkipsCloseEvents(s *Server) bool { return s.closeSkip.skip.Load() }

// SetMaxTLSHandshakes sets the bound of concurrent TLS handshakes of the
// listeners started from now on, until the test ends.
func SetMaxTLSHandshakes(t interface{ Cleanup(func()) }, n int) {
	old := maxHandshakes
	maxHandshakes = n
	t.Cleanup(func() { maxHandshakes = old })
}

// TLSTakeovers returns how many TLS 1.3 connections of listener name had
// their records taken over from crypto/tls by the gateway's record layer.
func TLSTakeovers(s *Server, name string) int64 {
	for _, l := range s.listeners {
		if l.cfg.Name == name {
			var tl *tlsLayer
			switch e := l.eng.(type) {
			case *wsEngine:
				tl = e.tls
			case *tcpEngine:
				tl = e.tls
			}
			if tl != nil {
				return tl.takeovers.Load()
			}
		}
	}
	return -1
}

// SetRegisterDelay makes the gateway wait d between adding a connection to
// the hub (its 101 written) and queuing its first events, until the test
// ends.
func SetRegisterDelay(t interface{ Cleanup(func()) }, d time.Duration) {
	testHookRegistered = func() { time.Sleep(d) }
	t.Cleanup(func() { testHookRegistered = nil })
}
