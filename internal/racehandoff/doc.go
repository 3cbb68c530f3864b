// Package racehandoff makes nbio's hand-over of a connection between
// goroutines visible to the race detector.
//
// nbio hands a connection from the goroutine that set it up (an accept
// loop, or a client that dialed and adopted it) to a poller goroutine
// through epoll, which the race detector cannot see, so it reports the
// hand-over as a race. Under -race only, Release after the setup and the
// Hook's acquire before each read add an edge it can see; in normal builds
// both do nothing.
package racehandoff
