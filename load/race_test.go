//go:build race

package load

// raceEnabled is true in -race builds. nbio's nbhttp (v1.6.12) hands a
// new connection from its accept goroutine to a poller goroutine through
// epoll, which the race detector cannot see, so it reports the hand-over
// as a race inside the library (internal/racehandoff works around the same
// thing for the raw engine). The bare server uses nbhttp and cannot add
// that edge, so the bare-server tests skip under -race.
const raceEnabled = true
