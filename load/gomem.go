package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// GoMemory is the Go runtime's memory in use by a process: its heap spans
// in use (objects live or not yet swept) and its goroutine stacks.
type GoMemory struct {
	HeapInuse  int64 `json:"heap_inuse_bytes"`
	StackInuse int64 `json:"stack_inuse_bytes"`
}

// The Go collector's gauges that GoMemory reads from /metrics.
const (
	metricHeapInuse  = "go_memstats_heap_inuse_bytes"
	metricStackInuse = "go_memstats_stack_inuse_bytes"
)

// ReadGoMemory fetches http://httpAddr/metrics (Prometheus text format,
// with the bearer token when not empty) and returns the Go collector's
// heap and stack gauges. It fails when the page cannot be fetched or lacks
// either gauge. It is safe for concurrent use and bounded by a 10 s timeout.
func ReadGoMemory(ctx context.Context, httpAddr, token string) (GoMemory, error) {
	var m GoMemory
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return m, fmt.Errorf("load: metrics: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("load: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("load: metrics: %s", resp.Status)
	}
	return parseGoMemory(io.LimitReader(resp.Body, 16<<20))
}

// parseGoMemory reads the two gauges from a Prometheus text exposition.
func parseGoMemory(r io.Reader) (GoMemory, error) {
	var m GoMemory
	var haveHeap, haveStack bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || (name != metricHeapInuse && name != metricStackInuse) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return m, fmt.Errorf("load: metrics: %s: %w", name, err)
		}
		if name == metricHeapInuse {
			m.HeapInuse, haveHeap = int64(v), true
		} else {
			m.StackInuse, haveStack = int64(v), true
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("load: metrics: read: %w", err)
	}
	if !haveHeap || !haveStack {
		return m, fmt.Errorf("load: metrics: no %s or %s (is the Go collector registered?)", metricHeapInuse, metricStackInuse)
	}
	return m, nil
}

// ownGoMemory is this process's GoMemory, for the bare server that runs
// inside the gwload parent.
func ownGoMemory() GoMemory {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return GoMemory{HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse)}
}
