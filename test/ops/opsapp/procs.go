package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/worker"
)

// The environment of the procs app.
const (
	// envCrasher says what the user process "crasher" does: "panic-once:<file>"
	// panics unless <file> exists (it creates it first), "panic" panics
	// at once every time, anything else runs until stopped.
	envCrasher = "OPSAPP_CRASHER"
	// envDir is a directory for the uid dispatch test's marker and log.
	envDir = "OPSAPP_DIR"
)

// procsApp is the pid app plus two user processes, "pusher" (sends
// "push <pid> <n>" to uid "watch" every 50ms through the API) and
// "crasher" (see envCrasher), and two messages: "bind <uid>" binds the
// client to uid and answers "bound"; "seq <n>" is the uid dispatch test's
// event (see handleSeq).
func procsApp(pid worker.Handlers) cli.App {
	h := pid
	h.OnMessage = func(c *worker.Context, msg []byte) {
		switch {
		case bytes.HasPrefix(msg, []byte("bind ")):
			c.BindUID(string(msg[5:]))
			c.Send([]byte("bound"))
		case bytes.HasPrefix(msg, []byte("seq ")):
			handleSeq(c, string(msg[4:]))
		default:
			pid.OnMessage(c, msg)
		}
	}
	return cli.App{
		Name:        "procs",
		Description: "the pid app with user processes",
		Handlers:    h,
		Processes: []worker.Process{
			{Name: "pusher", Run: pusher},
			{Name: "crasher", Run: crasher},
		},
	}
}

func pusher(ctx context.Context, p *worker.ProcessContext) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		msg := fmt.Sprintf("push %d %d", os.Getpid(), n)
		if err := p.API.SendToUID(ctx, []string{"watch"}, []byte(msg)); err != nil && ctx.Err() == nil {
			return fmt.Errorf("pusher: %w", err)
		}
	}
}

func crasher(ctx context.Context, p *worker.ProcessContext) error {
	mode := os.Getenv(envCrasher)
	switch {
	case mode == "panic":
		panic("crasher: panicking as asked")
	case strings.HasPrefix(mode, "panic-once:"):
		f := strings.TrimPrefix(mode, "panic-once:")
		if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				return err
			}
			panic("crasher: panicking once as asked")
		}
	}
	p.Logger.Info("crasher running")
	<-ctx.Done()
	return nil
}

// handleSeq handles "seq <n>" of a client bound to a uid: it marks the
// uid busy with a file created exclusively in envDir (so that two handlers
// of the uid running at once, in any worker process, see each other),
// appends "<client> <n>" to the uid's log, holds the mark for 2ms and
// answers "ok <n>", or "OVERLAP <n>" when the mark was already there.
func handleSeq(c *worker.Context, n string) {
	dir, uid := os.Getenv(envDir), c.UID()
	if dir == "" || uid == "" {
		c.Send([]byte("ERROR no dir or no uid"))
		return
	}
	mark := filepath.Join(dir, "busy-"+uid)
	f, err := os.OpenFile(mark, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		c.Send([]byte("OVERLAP " + n))
		return
	}
	_ = f.Close()
	if lf, err := os.OpenFile(filepath.Join(dir, "log-"+uid), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		_, _ = lf.WriteString(c.ClientID() + " " + n + " " + strconv.Itoa(os.Getpid()) + "\n")
		_ = lf.Close()
	}
	time.Sleep(2 * time.Millisecond)
	_ = os.Remove(mark)
	c.Send([]byte("ok " + n))
}
