package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
)

// Process is a user process (Swoole's addProcess): a long-running function
// of the app, such as a queue consumer that pushes to clients or a
// periodic job. The master of `gatework start` runs each process of the
// app in an OS process of its own, started once the node is ready,
// restarted with a back-off whenever it returns or panics (see
// docs/tasks.md, "User processes"), stopped before the gateway on
// shutdown and replaced by one of the new binary on reload.
type Process struct {
	// Name identifies the process in logs, `gatework status` and getStats;
	// it must match [a-z0-9][a-z0-9_-]{0,31} and be unique in the app.
	Name string
	// Run is the process's body. It should run until ctx is done, then
	// return (within the shutdown timeout, else the process is killed).
	// A Run that returns before that, with an error, nil or a panic, is
	// restarted: the error and the panic's stack are logged and count
	// towards the failing limit (5 exits within a minute).
	Run func(ctx context.Context, p *ProcessContext) error
}

// processName is the syntax of Process.Name.
var processName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// CheckProcesses validates the processes of an app: a valid, unique name
// and a Run function each.
func CheckProcesses(ps []Process) error {
	seen := make(map[string]bool, len(ps))
	for _, p := range ps {
		switch {
		case !processName.MatchString(p.Name):
			return fmt.Errorf("worker: process name %q: must match %s", p.Name, processName)
		case seen[p.Name]:
			return fmt.Errorf("worker: process %q given twice", p.Name)
		case p.Run == nil:
			return fmt.Errorf("worker: process %q has no Run function", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// ProcessContext is what a user process gets besides its context: the API
// client, to push to clients and query them like a handler does, and its
// identity.
type ProcessContext struct {
	// Name is the process's name (Process.Name).
	Name string
	// API reaches the clients of every gateway of the cluster.
	API *api.Client
	// Logger logs with the process's name.
	Logger *slog.Logger
	// Started is when this run of the process started.
	Started time.Time
}

// ProcessRunConfig is what RunProcess needs: how to reach the bus, the
// process and the API client's settings.
type ProcessRunConfig struct {
	// Bus says how to reach the bus (bus.Connect), as RunConfig.Bus.
	Bus bus.Options
	// Process is the process to run.
	Process Process
	// API configures the API client (its Prefix is the bus prefix).
	API api.Config
	// Logger receives the process's logs; nil means slog.Default().
	Logger *slog.Logger
	// Ready, when set, is called once the bus is connected, before Run
	// is called (the master's ready line). An error stops RunProcess.
	Ready func() error
}

// ErrProcessPanic wraps the panic of a user process's Run.
var ErrProcessPanic = errors.New("worker: user process panicked")

// RunProcess runs cfg.Process in this process: it connects to the bus,
// makes the API client, calls cfg.Ready, then Run with ctx. It returns
// Run's error; a panic of Run is recovered and returned wrapping
// ErrProcessPanic with its stack. A Run that returns nil before ctx is
// done returns nil too: the caller (the master's child) exits and is
// restarted.
func RunProcess(ctx context.Context, cfg ProcessRunConfig) (err error) {
	if cfg.Process.Run == nil {
		return fmt.Errorf("worker: process %q has no Run function", cfg.Process.Name)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("process", cfg.Process.Name)
	if cfg.API.Logger == nil {
		cfg.API.Logger = log.With("component", "api")
	}
	nc, err := bus.Connect(cfg.Bus)
	if err != nil {
		return fmt.Errorf("worker: process %s: %w", cfg.Process.Name, err)
	}
	defer nc.Close()
	a, err := api.New(nc, cfg.API)
	if err != nil {
		return fmt.Errorf("worker: process %s: %w", cfg.Process.Name, err)
	}
	defer a.Close()
	if cfg.Ready != nil {
		if err := cfg.Ready(); err != nil {
			return err
		}
	}
	pc := &ProcessContext{Name: cfg.Process.Name, API: a, Logger: log, Started: time.Now()}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrProcessPanic, r, debug.Stack())
		}
		// What the process sent leaves before the connection closes.
		_ = nc.FlushTimeout(time.Second)
	}()
	return cfg.Process.Run(ctx, pc)
}
