// Command opsapp is the program of the operations tests: gatework's whole
// command line (cli.Main) with two apps. "pid" answers every message with
// "<pid>:<build> <message>": the worker process's pid and the first 8 hex
// digits of the SHA-256 of its executable file, so that a test sees which
// process and which binary handled it. "procs" answers the same, and has
// two user processes and the messages of the uid dispatch test (see
// procs.go).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strconv"

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
	}
	os.Exit(cli.Main(cli.App{
		Name:        "pid",
		Description: "answers <pid>:<build> <message>",
		Handlers:    pid,
	}, procsApp(pid)))
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
