package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/master"
	"github.com/gatework/gatework/webhook"
	"github.com/gatework/gatework/worker"
)

// Internal environment variables (not configuration keys: they do not
// start with GATEWORK_).
const (
	// envChild marks a worker process run by a master (its value is
	// childFromStdin): its bus and settings, a childSpec holding the bus
	// password, come as the first line of its standard input (JSON), not
	// through the environment, which other processes of the user can
	// read in /proc/<pid>/environ.
	envChild = "_GATEWORK_WORKER"
	// childFromStdin is the value of envChild.
	childFromStdin = "stdin"
	// envDaemon marks the detached master of `start -d`.
	envDaemon = "_GATEWORK_DAEMON"
)

// childStopTimeout bounds a worker process's drain after SIGTERM.
const childStopTimeout = 30 * time.Second

// childSpec is what a worker process needs from its master.
type childSpec struct {
	busCreds
	// InboxPrefix is the prefix of the reply subjects the credentials
	// may subscribe to; "" means the worker's (bus.RoleWorker).
	InboxPrefix  string        `json:"inbox_prefix,omitempty"`
	Prefix       string        `json:"prefix"`
	Concurrency  int           `json:"concurrency"`
	QueryTimeout time.Duration `json:"query_timeout"`
	ReqTimeout   time.Duration `json:"request_timeout"`
	Log          LogConfig     `json:"log"`
	// WorkerIDPrefix, when set, makes the worker id "<prefix>-<pid>", by
	// which the master names its children in stats answers. Empty means
	// a random id.
	WorkerIDPrefix string `json:"worker_id_prefix,omitempty"`
	// Kind is "task" for a dedicated task process, "" for a worker
	// process.
	Kind string `json:"kind,omitempty"`
	// NoTasks keeps a worker process from taking tasks (task processes
	// run them).
	NoTasks bool `json:"no_tasks,omitempty"`
	// The task settings (worker.task_*).
	TaskConcurrency int `json:"task_concurrency,omitempty"`
	TaskMaxAttempts int `json:"task_max_attempts,omitempty"`
	TaskMaxPayload  int `json:"task_max_payload,omitempty"`
	// HeapFloor is worker.heap_floor (worker.Config.HeapFloor).
	HeapFloor int64 `json:"heap_floor,omitempty"`
	// Webhook, when its URL is set, makes the process a webhook worker
	// (package webhook) instead of an app's.
	Webhook WebhookConfig `json:"webhook,omitempty"`
}

// workerCommand is `worker --app <name>`: one worker process, either run
// by the master of `start` (it hands the bus over in envChild) or by hand
// against an external NATS (nats.url).
func (r *runner) workerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run one worker process serving an app, over an external NATS (nats.url)",
		Long: `Run one worker process that serves the events of every gateway of the
cluster with an app (--app, default worker.app), connected to the NATS
cluster named by nats.url with its credentials; worker.concurrency events
at once. Run any number, on any host, and stop them at any time: SIGINT or
SIGTERM drains the events in hand; events of a worker killed outright go
to another worker. The master of 'gatework start' runs this command for its
own worker processes. See docs/deployment.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return r.runWorker(cmd)
		},
	}
	r.flags.addRoleFlags(cmd, roleWorker)
	return cmd
}

// standaloneSpec is the childSpec of a worker run by hand, from the
// configuration, and the app: worker.app (--app overrides it).
func (r *runner) standaloneSpec(cmd *cobra.Command) (childSpec, string, error) {
	c, err := r.load(cmd)
	if err != nil {
		return childSpec{}, "", err
	}
	if c.NATS.URL == "" {
		return childSpec{}, "", fmt.Errorf("worker: %w", errNoNATSURL)
	}
	return childSpec{
		busCreds: credsOfConfig(c.NATS),
		Prefix:   c.Prefix, Concurrency: c.Worker.Concurrency,
		QueryTimeout: time.Duration(c.API.QueryTimeout), ReqTimeout: time.Duration(c.API.RequestTimeout),
		Log: c.Log, Webhook: c.Worker.Webhook,
		TaskConcurrency: c.Worker.TaskConcurrency, TaskMaxAttempts: c.Worker.TaskMaxAttempts,
		TaskMaxPayload: c.Worker.TaskMaxPayload, HeapFloor: c.Worker.HeapFloor,
	}, c.Worker.App, nil
}

// runWorker serves events until SIGTERM (or SIGINT when run by hand) or,
// under a master, the EOF of stdin (the master died), then drains. Under a
// master it writes master.ReadyLine on stdout once it serves.
func (r *runner) runWorker(cmd *cobra.Command) error {
	child := os.Getenv(envChild) != ""
	spec, app, proto, err := r.childSetup(cmd, "worker")
	if err != nil {
		return err
	}
	var h *worker.Handlers
	for _, a := range r.apps {
		if a.Name == app {
			h = &a.Handlers
		}
	}
	if h == nil && spec.Webhook.URL == "" {
		return fmt.Errorf("worker: unknown app %q", app)
	}
	log := NewLogger(spec.Log, cmd.ErrOrStderr()).With("role", "worker", "pid", os.Getpid())
	ctx, release := childContext(cmd.Context(), proto, log)
	defer release()

	subj, err := bus.NewSubjects(spec.Prefix)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	inbox := spec.InboxPrefix
	if inbox == "" {
		inbox = subj.Inbox(bus.RoleWorker)
	}
	workerID := ""
	if spec.WorkerIDPrefix != "" {
		workerID = childWorkerID(spec.WorkerIDPrefix, os.Getpid())
	}
	busOpts := spec.options(bus.Options{
		Name: fmt.Sprintf("gatework-worker-%d", os.Getpid()), InboxPrefix: inbox,
		Errors: bus.NewAsyncErrors(log.With("component", "bus")),
	})
	if spec.Webhook.URL != "" {
		return runHook(ctx, busOpts, spec, log)
	}
	err = worker.Run(ctx, worker.RunConfig{
		Bus:      busOpts,
		Handlers: *h,
		Worker: worker.Config{
			ID:     workerID,
			Prefix: spec.Prefix, Concurrency: spec.Concurrency,
			Kind: worker.Kind(spec.Kind), NoTasks: spec.NoTasks, TaskConcurrency: spec.TaskConcurrency,
			Logger: log.With("app", app),
			// This process only runs the worker: after a burst of events
			// (a wave of connects), its memory goes back to the system.
			ReleaseMemory: true,
			HeapFloor:     spec.HeapFloor,
		},
		API: api.Config{
			QueryTimeout: spec.QueryTimeout, RequestTimeout: spec.ReqTimeout,
			Logger: log.With("component", "api"),
			Tasks:  api.TaskConfig{MaxAttempts: spec.TaskMaxAttempts, MaxPayload: spec.TaskMaxPayload},
		},
		DrainTimeout: childStopTimeout,
		Ready: func(w *worker.Worker, nc *nats.Conn) error {
			if child {
				proto.SetStats(func() any {
					return childStats{Worker: w.Stats(), Bus: nc.Status().String()}
				})
				if err := proto.Ready(); err != nil {
					return fmt.Errorf("worker: %w", err)
				}
				return nil
			}
			log.Info("worker ready", "app", app, "worker", w.ID(), "nats", redactNATS(spec.URL))
			return nil
		},
	})
	if err != nil {
		return err
	}
	log.Info("worker process stopped")
	return nil
}

// childStats is a worker process's answer to master.StatsRequest.
type childStats struct {
	Worker worker.Stats `json:"worker"`
	// Bus is the state of its NATS connection (CONNECTED, RECONNECTING…).
	Bus string `json:"bus"`
}

// runHook serves events with the webhook backend of spec until ctx is
// done, then drains (bounded by childStopTimeout).
func runHook(ctx context.Context, o bus.Options, spec childSpec, log *slog.Logger) error {
	nc, err := bus.Connect(o)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer nc.Close()
	hc := WorkerConfig{Webhook: spec.Webhook}.hookConfig()
	hc.Prefix, hc.Logger = spec.Prefix, log.With("component", "webhook")
	h, err := webhook.New(nc, hc)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if err := h.Start(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	log.Info("webhook worker ready", "worker", h.ID(), "nats", redactNATS(spec.URL))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), childStopTimeout)
	defer cancel()
	if err := h.Stop(sctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	_ = nc.FlushTimeout(time.Second)
	log.Info("worker process stopped")
	return nil
}

// childSetup reads what a worker or user process runs with: from the
// master on stdin when it is the master's child (proto is then the
// protocol with the master, on stdin and stdout), else from the command
// line and configuration. what names the process in errors.
func (r *runner) childSetup(cmd *cobra.Command, what string) (spec childSpec, app string, proto *master.Child, err error) {
	if os.Getenv(envChild) == "" {
		spec, app, err = r.standaloneSpec(cmd)
		return spec, app, nil, err
	}
	// The handlers' own child processes are not the master's children.
	_ = os.Unsetenv(envChild)
	proto, handoff, err := master.NewChild(os.Stdin, cmd.OutOrStdout())
	if err != nil {
		return spec, "", nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(handoff, &spec); err != nil {
		return spec, "", nil, fmt.Errorf("%s: bad settings from the master (%d bytes): %w", what, len(handoff), err)
	}
	if app = *r.flags.values["app"]; app == "" {
		app = r.defaultApp()
	}
	return spec, app, proto, nil
}
