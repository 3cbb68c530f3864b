// Command tasks is a gatework node whose app uses task workers and
// messages between worker processes (docs/tasks.md): a chat-like line
// protocol where slow work goes to tasks. Run it with the master's own
// task processes:
//
//	GATEWORK_WORKER_TASK_PROCESSES=2 go run ./examples/tasks start --workers 2 --ws 127.0.0.1:7272
//
// See README.md for the commands a client can send.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/worker"
)

// slowWork stands for a call to a slow third-party service.
const slowWork = 500 * time.Millisecond

// handlers is the whole app.
var handlers = worker.Handlers{
	OnWorkerStart: func(w *worker.Worker) {
		slog.Info("worker started", "id", w.ID(), "pid", os.Getpid())
	},
	OnMessage: onMessage,
	// A task: "<client id>\n<text>". It pushes its result to the client
	// itself (tasks have the API at hand) and returns it to the submitter.
	OnTask: func(tc *worker.TaskContext, payload []byte) ([]byte, error) {
		client, text, ok := bytes.Cut(payload, []byte("\n"))
		if !ok {
			return nil, errors.New("malformed task")
		}
		select {
		case <-time.After(slowWork):
		case <-tc.Context().Done():
			return nil, tc.Context().Err()
		}
		out := fmt.Sprintf("task %s (attempt %d) on %s: %s", tc.ID(), tc.Attempt(), tc.Worker().ID(), bytes.ToUpper(text))
		if len(client) > 0 {
			// The client may have gone meanwhile: that is not the
			// task's failure.
			_ = tc.API().SendToClient(tc.Context(), string(client), []byte(out))
		}
		return []byte(out), nil
	},
	// The outcome of a fire-and-forget task of this worker.
	OnFinish: func(w *worker.Worker, r worker.TaskResult) {
		slog.Info("task finished", "worker", w.ID(), "task", r.ID, "attempts", r.Attempts, "err", r.Err)
	},
	OnWorkerMessage: func(w *worker.Worker, from string, payload []byte) {
		slog.Info("worker message", "worker", w.ID(), "from", from, "message", string(payload))
	},
}

// onMessage reads one command line of a client.
func onMessage(c *worker.Context, msg []byte) {
	w := c.Worker()
	cmd, arg, _ := strings.Cut(strings.TrimSpace(string(msg)), " ")
	ctx := context.Background()
	switch cmd {
	case "slow": // fire and forget: the task answers the client itself
		if _, err := w.Task(ctx, []byte(c.ClientID()+"\n"+arg)); err != nil {
			c.Send([]byte("task refused: " + err.Error()))
			return
		}
		c.Send([]byte("queued"))
	case "wait": // wait for the result (this client's next events wait too)
		res, err := w.TaskWait(ctx, []byte("\n"+arg), 2*time.Second)
		if err != nil {
			c.Send([]byte("task failed: " + err.Error()))
			return
		}
		c.Send(res)
	case "multi": // one task per word, all at once, 1s for all
		words := strings.Fields(arg)
		payloads := make([][]byte, len(words))
		for i, word := range words {
			payloads[i] = []byte("\n" + word)
		}
		for i, r := range w.TaskWaitMulti(ctx, payloads, time.Second) {
			if r.Err != nil {
				c.Send(fmt.Appendf(nil, "%d: %v", i, r.Err))
			} else {
				c.Send(fmt.Appendf(nil, "%d: %s", i, r.Result))
			}
		}
	case "workers":
		for _, wi := range w.GetWorkerList() {
			c.Send(fmt.Appendf(nil, "%s %s pid %d on %s since %s", wi.ID, wi.Kind, wi.PID, wi.Host, wi.Started.Format(time.TimeOnly)))
		}
	case "all": // every worker process logs it once
		if err := w.SendMessageToAll(ctx, []byte(arg)); err != nil {
			c.Send([]byte("not sent: " + err.Error()))
		}
	case "to": // "to <worker id> <text>"
		id, text, _ := strings.Cut(arg, " ")
		if err := w.SendMessage(ctx, id, []byte(text)); err != nil {
			c.Send([]byte("not sent: " + err.Error()))
		}
	default:
		c.Send([]byte("commands: slow <text> | wait <text> | multi <words> | workers | all <text> | to <worker id> <text>"))
	}
}

func main() {
	os.Exit(cli.Main(cli.App{Name: "tasks", Description: "tasks and worker messages (docs/tasks.md)", Handlers: handlers}))
}
