package cli

import (
	"bufio"
	"context"
	"encoding/json"

	"fmt"
	"io"
	"os"
	"os/signal"

	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/master"
	"github.com/gatework/gatework/worker"
)

// Internal environment variables (not configuration keys: they do not
// start with GATEWORK_).
const (
	// envChild hands a worker process its bus and settings, as JSON of
	// childSpec. It holds the bus password: it is never logged.
	envChild = "_GATEWORK_WORKER"
	// envDaemon marks the detached master of `start -d`.
	envDaemon = "_GATEWORK_DAEMON"
)

// childStopTimeout bounds a worker process's drain after SIGTERM.
const childStopTimeout = 30 * time.Second

// childSpec is what a worker process needs from its master.
type childSpec struct {
	URL          string        `json:"url"`
	User         string        `json:"user,omitempty"`
	Password     string        `json:"password,omitempty"`
	Token        string        `json:"token,omitempty"`
	NKeySeedFile string        `json:"nkey_seed_file,omitempty"`
	CredsFile    string        `json:"creds_file,omitempty"`
	CAFile       string        `json:"ca_file,omitempty"`
	CertFile     string        `json:"cert_file,omitempty"`
	KeyFile      string        `json:"key_file,omitempty"`
	Prefix       string        `json:"prefix"`
	Concurrency  int           `json:"concurrency"`
	QueryTimeout time.Duration `json:"query_timeout"`
	ReqTimeout   time.Duration `json:"request_timeout"`
	Log          LogConfig     `json:"log"`
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
	n := c.NATS
	return childSpec{
		URL: n.URL, User: n.User, Password: n.Password, Token: n.Token,
		NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile,
		CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile,
		Prefix: c.Prefix, Concurrency: c.Worker.Concurrency,
		QueryTimeout: time.Duration(c.API.QueryTimeout), ReqTimeout: time.Duration(c.API.RequestTimeout),
		Log: c.Log,
	}, c.Worker.App, nil
}

// runWorker serves events until SIGTERM (or SIGINT when run by hand) or,
// under a master, the EOF of stdin (the master died), then drains. Under a
// master it writes master.ReadyLine on stdout once it serves.
func (r *runner) runWorker(cmd *cobra.Command) error {
	raw := os.Getenv(envChild)
	child := raw != ""
	var spec childSpec
	var app string
	if child {
		// It holds the bus password: the handlers' own child processes do
		// not inherit it.
		_ = os.Unsetenv(envChild)
		if err := json.Unmarshal([]byte(raw), &spec); err != nil {
			return fmt.Errorf("worker: bad %s (%d bytes): %w", envChild, len(raw), err)
		}
		if app = *r.flags.values["app"]; app == "" {
			app = r.defaultApp()
		}
	} else {
		var err error
		if spec, app, err = r.standaloneSpec(cmd); err != nil {
			return err
		}
	}
	var h *worker.Handlers
	for _, a := range r.apps {
		if a.Name == app {
			h = &a.Handlers
		}
	}
	if h == nil {
		return fmt.Errorf("worker: unknown app %q", app)
	}
	log := NewLogger(spec.Log, cmd.ErrOrStderr()).With("role", "worker", "pid", os.Getpid())
	sigs := []os.Signal{syscall.SIGTERM, os.Interrupt}
	if child {
		// Ctrl-C in a terminal reaches the whole process group: the
		// master decides when its workers stop.
		signal.Ignore(os.Interrupt)
		sigs = sigs[:1]
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), sigs...)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &childOut{w: cmd.OutOrStdout()}
	go func() {
		if !child {
			return
		}
		// Requests of the master, one a line; EOF: the master is gone.
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == master.StatsRequest {
				out.stats()
			}
		}
		cancel()
	}()

	nc, err := bus.Connect(bus.Options{
		URL: spec.URL, User: spec.User, Password: spec.Password, Token: spec.Token,
		NKeySeedFile: spec.NKeySeedFile, CredsFile: spec.CredsFile,
		CAFile: spec.CAFile, CertFile: spec.CertFile, KeyFile: spec.KeyFile,
		Name:   fmt.Sprintf("gatework-worker-%d", os.Getpid()),
		Errors: bus.NewAsyncErrors(log.With("component", "bus")),
	})
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer nc.Close()
	a, err := api.New(nc, api.Config{
		Prefix: spec.Prefix, QueryTimeout: spec.QueryTimeout, RequestTimeout: spec.ReqTimeout,
		Logger: log.With("component", "api"),
	})
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer a.Close()
	w, err := worker.New(nc, a, worker.Config{
		Prefix: spec.Prefix, Concurrency: spec.Concurrency,
		Logger: log.With("app", app),
		// This process only runs the worker: after a burst of events
		// (a wave of connects), its memory goes back to the system.
		ReleaseMemory: true,
	}, *h)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	// The subscription is known to the server once the flush returns:
	// from then on, events reach this process.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		_ = w.Stop(context.Background())
		return fmt.Errorf("worker: flush: %w", err)
	}
	out.setSource(func() any {
		return childStats{Worker: w.Stats(), Bus: nc.Status().String()}
	})
	if child {
		if err := out.line(master.ReadyLine); err != nil {
			_ = w.Stop(context.Background())
			return fmt.Errorf("worker: report ready: %w", err)
		}
	} else {
		log.Info("worker ready", "app", app, "worker", w.ID(), "nats", redactNATS(spec.URL))
	}
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), childStopTimeout)
	defer scancel()
	if err := w.Stop(sctx); err != nil {
		return err
	}
	_ = nc.FlushTimeout(time.Second)
	log.Info("worker process stopped")
	return nil
}

// childStats is a worker process's answer to master.StatsRequest.
type childStats struct {
	Worker worker.Stats `json:"worker"`
	// Bus is the state of its NATS connection (CONNECTED, RECONNECTING…).
	Bus string `json:"bus"`
}

// childOut writes the lines of the child protocol on stdout, one at a
// time.
type childOut struct {
	mu     sync.Mutex
	w      io.Writer
	source func() any // what stats reports; nil until the worker runs
}

func (o *childOut) setSource(f func() any) {
	o.mu.Lock()
	o.source = f
	o.mu.Unlock()
}

func (o *childOut) line(s string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, err := io.WriteString(o.w, s+"\n")
	return err
}

// stats answers a stats request (nothing before the worker runs).
func (o *childOut) stats() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.source == nil {
		return
	}
	b, err := json.Marshal(o.source())
	if err != nil {
		return
	}
	_, _ = io.WriteString(o.w, master.StatsPrefix+string(b)+"\n")
}
