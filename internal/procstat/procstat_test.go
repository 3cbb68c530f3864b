package procstat

import (
	"os"
	"runtime"
	"testing"
)

func TestRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RSS reads /proc")
	}
	n, err := RSS(os.Getpid())
	if err != nil || n < 1<<20 {
		t.Fatalf("RSS(self) = %d, %v; want at least 1 MiB", n, err)
	}
	if _, err := RSS(-1); err == nil {
		t.Fatal("RSS(-1) did not fail")
	}
}
