package node

import (
	"testing"
	"time"
)

func TestHTTPLimits(t *testing.T) {
	l, err := HTTPConfig{}.limits()
	if err != nil {
		t.Fatal(err)
	}
	want := httpLimits{readHeader: 10 * time.Second, body: 30 * time.Second, idle: 2 * time.Minute,
		write: 10 * time.Second, maxConns: 256, healthConns: 8}
	if l != want {
		t.Errorf("defaults %+v, want %+v", l, want)
	}
	for _, hc := range []HTTPConfig{{BodyTimeout: -1}, {MaxConns: -1}, {HealthConns: -1}, {WriteTimeout: -1}} {
		if _, err := hc.limits(); err == nil {
			t.Errorf("%+v: no error", hc)
		}
	}
}

func TestFitFileLimit(t *testing.T) {
	for _, tc := range []struct {
		max, health int
		files       uint64
		want        int
		lowered     bool
	}{
		{256, 8, 0, 256, false},       // unknown limit
		{256, 8, 1 << 20, 256, false}, // plenty
		{256, 8, 1056, 256, false},    // exactly a quarter
		{256, 8, 1024, 248, true},     // 256 files for HTTP, 8 of them for health
		{256, 8, 256, 56, true},       // the 190 connections would have fitted in 256 files
		{256, 8, 20, 1, true},         // at least one ordinary connection
	} {
		l := httpLimits{maxConns: tc.max, healthConns: tc.health}
		if got := l.fitFileLimit(tc.files); got != tc.lowered || l.maxConns != tc.want {
			t.Errorf("max %d health %d files %d: max %d lowered %v, want %d %v", tc.max, tc.health, tc.files, l.maxConns, got, tc.want, tc.lowered)
		}
	}
}
