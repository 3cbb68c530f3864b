// Command opsapp is the program of the operations tests: gatework's whole
// command line (cli.Main) with two apps. "pid" answers every message with
// "<pid>:<build> <message>": the worker process's pid and the first 8 hex
// digits of the SHA-256 of its executable file, so that a test sees which
// process and which binary handled it. Its tasks sleep 100ms, then append
// "<payload> <pid> <attempt>" as a line to the file named by
// $OPSAPP_TASK_LOG (if set) and return "<pid>:<payload>". "procs" answers
// the same, and has two user processes and the messages of the uid
// dispatch test (see procs.go).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/worker"
)

// prefix is "<pid>:<build> ", set by OnWorkerStart.
var prefix []byte

func main() {
	pid := worker.Handlers{
		OnWorkerStart: func(*worker.Worker) {
			prefix = []byte(strconv.Itoa(os.Getpid()) + ":" + buildID() + " ")
		},
		OnMessage: func(c *worker.Context, msg []byte) {
			c.Send(append(append([]byte(nil), prefix...), msg...))
		},
		OnTask: runTask,
	}
	os.Exit(cli.Main(cli.App{
		Name:        "pid",
		Description: "answers <pid>:<build> <message>",
		Handlers:    pid,
	}, procsApp(pid)))
}

// runTask is the app's task handler.
func runTask(tc *worker.TaskContext, payload []byte) ([]byte, error) {
	select {
	case <-time.After(100 * time.Millisecond):
	case <-tc.Context().Done():
		return nil, tc.Context().Err()
	}
	pid := strconv.Itoa(os.Getpid())
	if path := os.Getenv("OPSAPP_TASK_LOG"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		// One write of a short line to an O_APPEND file: lines of
		// several processes do not interleave.
		_, err = fmt.Fprintf(f, "%s %s %d\n", payload, pid, tc.Attempt())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	return []byte(pid + ":" + string(payload)), nil
}

// buildID hashes the executable this process runs (through /proc, so that
// a file replaced on disk since does not count).
func buildID() string {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(h.Sum(nil))[:8]
}
