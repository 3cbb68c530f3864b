//go:build !race

package gateway

import "github.com/lesismal/nbio"

// engineHandoff and raceReadHook exist for the race detector (race.go).
func engineHandoff()              {}
func raceReadHook(e *nbio.Engine) {}
