// Command opsapp is the program of the operations tests: gatework's whole
// command line (cli.Main) with one app, "pid", that answers every message
// with "<pid of the worker process> <message>", so that a test sees which
// process handled it.
package main

import (
	"os"
	"strconv"

	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/worker"
)

func main() {
	prefix := []byte(strconv.Itoa(os.Getpid()) + " ")
	os.Exit(cli.Main(cli.App{
		Name:        "pid",
		Description: "answers <pid> <message>",
		Handlers: worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) {
			c.Send(append(append([]byte(nil), prefix...), msg...))
		}},
	}))
}
