//go:build !race

package racehandoff

import "github.com/lesismal/nbio"

// Release does nothing outside -race builds (see race.go).
func Release() {}

// Hook does nothing outside -race builds (see race.go).
func Hook(*nbio.Engine) {}
