//go:build !race

package worker

// raceEnabled: the race detector is on (it changes allocation counts).
const raceEnabled = false
