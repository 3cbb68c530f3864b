package worker

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRSSOf: the anonymous and file-backed resident bytes of a
// smaps_rollup file; zeros for a missing one.
func TestRSSOf(t *testing.T) {
	dir := t.TempDir()
	rollup := `00400000-7fffd000 ---p 00000000 00:00 0                                [rollup]
Rss:               12345 kB
Pss:               10000 kB
Pss_Anon:           4000 kB
Anonymous:          4321 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
`
	tests := []struct {
		name       string
		text       string
		anon, file uint64
	}{
		{"rollup", rollup, 4321 << 10, (12345 - 4321) << 10},
		{"no anonymous line", "Rss: 8 kB\n", 0, 8 << 10},
		{"garbage", "Rss: x kB\nAnonymous:\n", 0, 0},
		{"missing", "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "missing")
			if tt.text != "" {
				path = filepath.Join(dir, tt.name)
				if err := os.WriteFile(path, []byte(tt.text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			anon, file := rssOf(path)
			if anon != tt.anon || file != tt.file {
				t.Fatalf("anon %d file %d, want %d %d", anon, file, tt.anon, tt.file)
			}
		})
	}
	f := ReadMemoryFigures()
	if f.HeapInUse == 0 || f.Metadata == 0 || f.Stacks == 0 {
		t.Fatalf("this process: %+v", f)
	}
	if _, err := os.Stat("/proc/self/smaps_rollup"); err == nil && f.AnonRSS == 0 {
		t.Fatalf("this process: no anonymous RSS in %+v", f)
	}
}
