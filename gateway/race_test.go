//go:build race

package gateway_test

// raceEnabled: the race detector is on (it changes allocation counts).
const raceEnabled = true
