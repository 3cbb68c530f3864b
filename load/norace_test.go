//go:build !race

package load

// raceEnabled is false in normal builds; see race_test.go.
const raceEnabled = false
