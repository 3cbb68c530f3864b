package worker

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"runtime/metrics"
	"strconv"
)

// MemoryFigures is where a process's memory is, from runtime/metrics and
// /proc/self/smaps_rollup (Linux; zero elsewhere), in bytes. A worker
// process logs them each time it gives a burst's memory back
// (Config.ReleaseMemory): what stays then is what an idle worker costs.
type MemoryFigures struct {
	HeapInUse    uint64 `json:"heap_in_use"`   // objects, live or not yet swept
	HeapFree     uint64 `json:"heap_free"`     // free heap still mapped
	HeapReleased uint64 `json:"heap_released"` // free heap given back to the OS
	Stacks       uint64 `json:"stacks"`        // goroutine stacks (heap/stacks + os-stacks)
	Metadata     uint64 `json:"metadata"`      // the runtime's own: spans, caches, GC metadata
	Other        uint64 `json:"other"`         // profiling buckets and the rest
	AnonRSS      uint64 `json:"anon_rss"`      // resident, anonymous (heap, stacks, metadata)
	FileRSS      uint64 `json:"file_rss"`      // resident, file-backed (code and data of the binary)
}

// memoryMetrics are the runtime/metrics names MemoryFigures sums.
var memoryMetrics = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/os-stacks:bytes",
	"/memory/classes/metadata/mcache/free:bytes",
	"/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/metadata/mspan/free:bytes",
	"/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/metadata/other:bytes",
	"/memory/classes/profiling/buckets:bytes",
	"/memory/classes/other:bytes",
}

// ReadMemoryFigures returns this process's MemoryFigures.
func ReadMemoryFigures() MemoryFigures {
	s := make([]metrics.Sample, len(memoryMetrics))
	for i, n := range memoryMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	f := MemoryFigures{
		HeapInUse:    v(0) + v(1),
		HeapFree:     v(2),
		HeapReleased: v(3),
		Stacks:       v(4) + v(5),
		Metadata:     v(6) + v(7) + v(8) + v(9) + v(10),
		Other:        v(11) + v(12),
	}
	f.AnonRSS, f.FileRSS = rssOf("/proc/self/smaps_rollup")
	return f
}

// rssOf reads the anonymous and file-backed resident bytes of a
// smaps_rollup file; zeros when it cannot be read.
func rssOf(path string) (anon, file uint64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	var rss uint64
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseUint(string(fields[0]), 10, 64)
		if err != nil {
			continue
		}
		switch string(name) {
		case "Rss":
			rss = kb << 10
		case "Anonymous":
			anon = kb << 10
		}
	}
	if rss > anon {
		file = rss - anon
	}
	return anon, file
}

// logMemory logs this process's MemoryFigures at debug level, in KiB.
func (w *Worker) logMemory(msg string) {
	if !w.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	f := ReadMemoryFigures()
	w.log.Debug(msg, "heap_in_use_kib", f.HeapInUse>>10, "heap_free_kib", f.HeapFree>>10,
		"heap_released_kib", f.HeapReleased>>10, "stacks_kib", f.Stacks>>10, "metadata_kib", f.Metadata>>10,
		"other_kib", f.Other>>10, "anon_rss_kib", f.AnonRSS>>10, "file_rss_kib", f.FileRSS>>10)
}
