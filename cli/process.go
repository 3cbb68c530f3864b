package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/master"
	"github.com/gatework/gatework/worker"
)

// A user process (worker.Process) that exits this many times within
// processFailWindow is reported failing and waits processFailBackoff
// before its next start; the node stays up.
const (
	processFailLimit   = 5
	processFailWindow  = time.Minute
	processFailBackoff = 30 * time.Second
)

// userProc is one user process of the app and its supervisor (one child
// process each).
type userProc struct {
	name string
	sup  *master.Supervisor
}

// processCommand is `process --name <name>`: one user process of the app,
// run by the master of `start` (the bus comes on stdin, as for worker
// processes) or by hand against an external NATS (nats.url).
func (r *runner) processCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "process",
		Short: "Run one user process of an app (worker.Process), over an external NATS (nats.url)",
		Long: `Run one of the app's user processes (cli.App.Processes, --name), connected to
the NATS cluster named by nats.url with its credentials, until SIGINT or
SIGTERM. The master of 'gatework start' runs this command for each user
process of its app, and restarts it when it exits. See docs/tasks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return r.runProcess(cmd, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the user process to run (required)")
	r.flags.addRoleFlags(cmd, roleWorker)
	return cmd
}

// appProcess returns the process name of app.
func (r *runner) appProcess(app, name string) (worker.Process, error) {
	for _, a := range r.apps {
		if a.Name != app {
			continue
		}
		for _, p := range a.Processes {
			if p.Name == name {
				return p, nil
			}
		}
		return worker.Process{}, fmt.Errorf("process: app %q has no process %q", app, name)
	}
	return worker.Process{}, fmt.Errorf("process: unknown app %q", app)
}

// runProcess runs the user process name until SIGTERM (or SIGINT when run
// by hand) or, under a master, the EOF of stdin. Under a master it writes
// master.ReadyLine once connected. It returns the process's error (a panic
// included): the process exits 1 and its master restarts it.
func (r *runner) runProcess(cmd *cobra.Command, name string) error {
	child := os.Getenv(envChild) != ""
	spec, app, proto, err := r.childSetup(cmd, "process")
	if err != nil {
		return err
	}
	p, err := r.appProcess(app, name)
	if err != nil {
		return err
	}
	log := NewLogger(spec.Log, cmd.ErrOrStderr()).With("role", "process", "pid", os.Getpid())
	ctx, release := childContext(cmd.Context(), proto, log)
	defer release()
	subj, err := bus.NewSubjects(spec.Prefix)
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	inbox := spec.InboxPrefix
	if inbox == "" {
		inbox = subj.Inbox(bus.RoleWorker)
	}
	err = worker.RunProcess(ctx, worker.ProcessRunConfig{
		Bus: spec.options(bus.Options{
			Name: fmt.Sprintf("gatework-process-%s-%d", name, os.Getpid()), InboxPrefix: inbox,
			Errors: bus.NewAsyncErrors(log.With("component", "bus")),
		}),
		Process: p,
		API: api.Config{
			Prefix: spec.Prefix, QueryTimeout: spec.QueryTimeout, RequestTimeout: spec.ReqTimeout,
			Logger: log.With("component", "api"),
		},
		Logger: log,
		Ready: func() error {
			if !child {
				log.Info("user process ready", "app", app, "nats", redactNATS(spec.URL))
				return nil
			}
			return proto.Ready()
		},
	})
	switch {
	case err != nil && errors.Is(err, worker.ErrProcessPanic):
		log.Error("user process panicked", "err", err)
		return err
	case err != nil:
		log.Error("user process failed", "err", err)
		return err
	case ctx.Err() == nil:
		log.Warn("user process returned before it was asked to stop")
	}
	return nil
}

// startProcesses starts a supervisor per user process of the app (each in
// a child process running `process --name`), once the node and its workers
// are ready, and waits until every one reported ready.
func (m *masterRun) startProcesses(ctx context.Context, exe string, env []string, handoff []byte, stderr io.Writer) error {
	for _, p := range m.userProcs {
		sup, err := master.New(master.Config{
			Path:        exe,
			Args:        []string{"process", "--app", m.cfg.Worker.App, "--name", p.Name},
			Env:         env,
			Handoff:     handoff,
			Processes:   1,
			StopTimeout: m.shutdownTimeout(),
			Stderr:      stderr,
			Logger:      m.log.With("component", "master", "process", p.Name),
			Kind:        "user process",
			FailLimit:   processFailLimit,
			FailWindow:  processFailWindow,
			FailBackoff: processFailBackoff,
		})
		if err != nil {
			return err
		}
		m.procsMu.Lock()
		m.procs = append(m.procs, userProc{name: p.Name, sup: sup})
		m.procsMu.Unlock()
		if err := sup.Start(ctx); err != nil {
			return fmt.Errorf("user process %s: %w", p.Name, err)
		}
	}
	return nil
}

// stopProcesses stops the user processes (SIGTERM, then SIGKILL at the
// shutdown timeout), all at once.
func (m *masterRun) stopProcesses(ctx context.Context) {
	procs := m.procList()
	done := make(chan struct{}, len(procs))
	for _, p := range procs {
		go func() {
			_ = p.sup.Stop(ctx)
			done <- struct{}{}
		}()
	}
	for range procs {
		<-done
	}
}

// reloadProcesses replaces each user process by one of the program now on
// disk (master.Supervisor.Reload: the new one ready, then the old one
// stopped).
func (m *masterRun) reloadProcesses(ctx context.Context) error {
	var errs []error
	for _, p := range m.procList() {
		if err := p.sup.Reload(ctx); err != nil {
			errs = append(errs, fmt.Errorf("user process %s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

// procList returns the user processes started so far.
func (m *masterRun) procList() []userProc {
	m.procsMu.Lock()
	defer m.procsMu.Unlock()
	return m.procs[:len(m.procs):len(m.procs)]
}

// processStatuses describes the user processes for status.
func (m *masterRun) processStatuses(now time.Time) []processStatus {
	var out []processStatus
	for _, up := range m.procList() {
		ps, _ := up.sup.Status()
		for _, p := range ps {
			rss, _ := master.RSS(p.PID)
			st := processStatus{Role: "process", Name: up.name, PID: p.PID}
			age := now.Sub(p.Started)
			st.Uptime, st.UptimeSeconds, st.RSSBytes = age.Truncate(time.Second).String(), age.Seconds(), rss
			st.Generation, st.Ready, st.Restarts = &p.Generation, &p.Ready, &p.Restarts
			st.Failing, st.LastExit = p.Failing, p.LastExit
			out = append(out, st)
		}
	}
	return out
}

// localProcesses names the user processes for the gateway's stats
// answers, from the supervisors' tables (never waits).
func (m *masterRun) localProcesses() []bus.ProcessStats {
	var out []bus.ProcessStats
	for _, up := range m.procList() {
		ps, _ := up.sup.Status()
		for _, p := range ps {
			rss, _ := master.RSS(p.PID)
			out = append(out, bus.ProcessStats{
				Name: up.name, PID: p.PID, StartedUnixMs: p.Started.UnixMilli(), RSSBytes: rss,
				Ready: p.Ready, Restarts: p.Restarts, Failing: p.Failing, LastExit: p.LastExit,
			})
		}
	}
	return out
}
