package workerkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/codec"
	"github.com/gatework/gatework/worker"
)

// envGoWorker makes the test binary run the Go kit worker instead of the
// tests.
const envGoWorker = "_GATEWORK_KIT_GO_WORKER"

// kitHandlers is the kit's app (examples/node-worker/worker.mjs lists it)
// with package worker.
func kitHandlers() worker.Handlers {
	return worker.Handlers{
		OnConnect: func(c *worker.Context) {
			c.JoinGroup("kit")
			_ = c.SetSession(api.Session{"n": 0})
		},
		OnWebSocketConnect: func(c *worker.Context, r *worker.Request) {
			if r.Path == "/reject" {
				c.Reject(403, "rejected by go worker")
			}
			if q, err := url.ParseQuery(r.RawQuery); err == nil && q.Get("uid") != "" {
				c.BindUID(q.Get("uid")) // bind on connect
			}
		},
		OnMessage: func(c *worker.Context, msg []byte) {
			s := string(msg)
			var v any
			switch {
			case c.Codec() != "" && c.Codec() != codec.Raw && c.Decode(&v) == nil:
				b, _ := json.Marshal(v)
				c.Send(append([]byte("value:"), b...))
			case c.Binary():
				c.SendBinary(msg)
			case strings.HasPrefix(s, "cmd:bind:"):
				uid := strings.TrimPrefix(s, "cmd:bind:")
				c.BindUID(uid)
				c.Send([]byte("bound:" + uid))
			case s == "cmd:state":
				b, _ := json.Marshal(map[string]any{"uid": c.UID(), "groups": c.Groups(), "session": c.Session()})
				c.Send(b)
			case s == "cmd:count":
				n, _ := c.Session()["n"].(float64)
				n++
				_ = c.UpdateSession(api.Session{"n": n})
				c.Send(fmt.Appendf(nil, "n=%d", int(n)))
			case strings.HasPrefix(s, "cmd:slow:"):
				ms, _ := strconv.Atoi(strings.TrimPrefix(s, "cmd:slow:"))
				time.Sleep(time.Duration(ms) * time.Millisecond)
				c.Send(fmt.Appendf(nil, "slow done attempt=%d", c.Attempt()))
			case s == "cmd:close":
				c.CloseWith([]byte("bye"))
			default:
				c.Send(msg)
			}
		},
		OnDecodeError: func(c *worker.Context, _ []byte, err *worker.DecodeError) {
			c.Send([]byte("decode_error:" + err.Reason))
		},
		OnClose: func(c *worker.Context) {
			note, _ := json.Marshal(map[string]any{"event": "close", "client": c.ClientID(), "reason": c.CloseReason(),
				"uid": c.UID(), "groups": c.Groups(), "session": c.Session()})
			ctx, cancel := context.WithTimeout(c.Context(), 5*time.Second)
			defer cancel()
			_ = c.API().SendToUID(ctx, []string{"observer"}, note)
		},
	}
}

// runGoWorker is the Go kit worker's main: it serves the kit's app on the
// bus named by the GATEWORK_* variables until SIGTERM, then drains.
func runGoWorker() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	prefix := os.Getenv("GATEWORK_PREFIX")
	subj, err := bus.NewSubjects(prefix)
	if err != nil {
		log.Error("prefix", "err", err)
		return 1
	}
	nc, err := bus.Connect(bus.Options{URL: os.Getenv("GATEWORK_NATS_URL"), User: os.Getenv("GATEWORK_NATS_USER"),
		Password: os.Getenv("GATEWORK_NATS_PASSWORD"), InboxPrefix: subj.Inbox(bus.RoleWorker), Name: "kit-go-worker"})
	if err != nil {
		log.Error("connect", "err", err)
		return 1
	}
	defer nc.Close()
	a, err := api.New(nc, api.Config{Prefix: prefix, Logger: log})
	if err != nil {
		log.Error("api", "err", err)
		return 1
	}
	defer a.Close()
	w, err := worker.New(nc, a, worker.Config{Prefix: prefix, Logger: log}, kitHandlers())
	if err != nil {
		log.Error("worker", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Error("worker", "err", err)
		return 1
	}
	return 0
}
