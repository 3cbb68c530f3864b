// Command process is gatework with the demo chat room and a user process,
// "clock", that announces the time to every client of the cluster once a
// minute through the API, and the number of clients online when it
// changes. `go run ./examples/process start` runs the node, the chat
// workers and the clock, each in a process of its own, under one master;
// `gatework status` (this binary's) lists the clock. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/worker"
)

func main() {
	os.Exit(cli.Main(cli.App{
		Name:        "chat",
		Description: "the chat room, with a clock that announces the time",
		Handlers:    chat.Handlers(),
		Processes:   []worker.Process{{Name: "clock", Run: clock}},
	}))
}

// announceEvery is the clock's period.
const announceEvery = time.Minute

// clock runs until the master stops it. Each tick it announces the time
// to every client, and the clients online when their number changed. An
// error returned here (say the bus is gone for longer than a request
// timeout) makes the master start the clock again after a back-off.
func clock(ctx context.Context, p *worker.ProcessContext) error {
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	last := -1
	p.Logger.Info("clock started", "every", announceEvery.String())
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			msg := fmt.Sprintf("* clock: it is %s", now.UTC().Format("15:04 MST"))
			if err := p.API.SendToAll(ctx, []byte(msg)); err != nil {
				return fmt.Errorf("announce the time: %w", err)
			}
			n, err := p.API.GetClientCount(ctx)
			if err != nil {
				return fmt.Errorf("count the clients: %w", err)
			}
			if n.Value != last {
				last = n.Value
				if err := p.API.SendToAll(ctx, fmt.Appendf(nil, "* clock: %d online", n.Value)); err != nil {
					return fmt.Errorf("announce the count: %w", err)
				}
			}
		}
	}
}
