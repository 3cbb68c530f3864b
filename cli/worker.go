package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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

// workerCommand is the hidden `worker --app <name>` that the master runs in
// each worker process.
func (r *runner) workerCommand() *cobra.Command {
	var app string
	cmd := &cobra.Command{
		Use:    "worker",
		Short:  "Run one worker process (started by the master of `start`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return r.runWorker(cmd, app)
		},
	}
	cmd.Flags().StringVar(&app, "app", r.defaultApp(), "the app to run")
	return cmd
}

// runWorker serves events until SIGTERM or the EOF of stdin (the master
// died), then drains. It writes master.ReadyLine on stdout once it serves.
func (r *runner) runWorker(cmd *cobra.Command, app string) error {
	raw := os.Getenv(envChild)
	if raw == "" {
		return errors.New("worker: this command is run by the master of `start`, not by hand")
	}
	// It holds the bus password: the handlers' own child processes do
	// not inherit it.
	_ = os.Unsetenv(envChild)
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return fmt.Errorf("worker: bad %s (%d bytes): %w", envChild, len(raw), err)
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
	// Ctrl-C in a terminal reaches the whole process group: the master
	// decides when its workers stop.
	signal.Ignore(os.Interrupt)
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &childOut{w: cmd.OutOrStdout()}
	go func() {
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
		Name: fmt.Sprintf("gatework-worker-%d", os.Getpid()),
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
	if err := out.line(master.ReadyLine); err != nil {
		_ = w.Stop(context.Background())
		return fmt.Errorf("worker: report ready: %w", err)
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
