package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/master"
	"github.com/gatework/gatework/worker"
)

// errNotRunning: no live master holds the pid file.
var errNotRunning = errors.New("gatework is not running")

// pidFile returns the pid file of c: pid_file, else
// $XDG_RUNTIME_DIR/gatework.pid, else /tmp/gatework-<uid>.pid.
func (c Config) pidFile() string {
	if c.PIDFile != "" {
		return c.PIDFile
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "gatework.pid")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("gatework-%d.pid", os.Getuid()))
}

// logFile returns the log file of `start -d`: log_file, else the pid file
// with .log for .pid.
func (c Config) logFile() string {
	if c.LogFile != "" {
		return c.LogFile
	}
	return strings.TrimSuffix(c.pidFile(), ".pid") + ".log"
}

// masterFiles returns the files a master owns beside its pid file, but
// the pid file: the control socket and the bus credentials.
func masterFiles(pidFile string) []string {
	return []string{master.SocketPath(pidFile), busEnvFile(pidFile)}
}

// statusReport is what `status --json` prints.
type statusReport struct {
	Version   string           `json:"version"`
	App       string           `json:"app"`
	Processes []processStatus  `json:"processes"`
	Workers   *master.Counters `json:"workers,omitempty"`
	// Gateways are the counters of the gateway processes
	// (gateway.processes above 1).
	Gateways *master.Counters `json:"gateways,omitempty"`
	// Tasks are the node's task counters (sums over its processes).
	Tasks *taskTotals `json:"tasks,omitempty"`
}

// taskTotals are a node's task counters: the task workers' gauges and
// counters summed over its worker and task processes, and the tasks lost
// by its submitters (those processes and the node's HTTP API).
type taskTotals struct {
	Queued   int    `json:"queued"`    // taken, waiting for a task goroutine
	InFlight int    `json:"in_flight"` // handlers running
	Done     uint64 `json:"done"`      // handlers that returned a result
	Failed   uint64 `json:"failed"`    // handlers that returned an error or panicked
	Retried  uint64 `json:"retried"`   // tasks taken on an attempt after the first
	Lost     uint64 `json:"lost"`      // tasks given up: the task worker of their last attempt was lost
}

// sumTasks sums the task counters of ps, plus the lost tasks of the
// node's own API client (submitted: its counters).
func sumTasks(ps []processStatus, submitted api.TaskStats) *taskTotals {
	t := &taskTotals{Lost: submitted.Lost}
	for _, p := range ps {
		if w := p.Worker; w != nil {
			t.add(w.Tasks)
		}
	}
	return t
}

// add adds one worker's task counters to t.
func (t *taskTotals) add(w worker.TaskStats) {
	t.Queued += w.Queued
	t.InFlight += w.Running
	t.Done += w.Done
	t.Failed += w.Failed
	t.Retried += w.Retried
	t.Lost += w.Lost
}

// String is t as the status line shows it.
func (t *taskTotals) String() string {
	return fmt.Sprintf("queued=%d in_flight=%d done=%d failed=%d retried=%d lost=%d",
		t.Queued, t.InFlight, t.Done, t.Failed, t.Retried, t.Lost)
}

// processStatus is one process of the node in a statusReport.
type processStatus struct {
	Role string `json:"role"`
	// Name is a user process's name (role process).
	Name          string         `json:"name,omitempty"`
	PID           int            `json:"pid"`
	Uptime        string         `json:"uptime"`
	UptimeSeconds float64        `json:"uptime_seconds"`
	RSSBytes      int64          `json:"rss_bytes"`
	Connections   *int           `json:"connections,omitempty"`
	Gateway       *gateway.Stats `json:"gateway,omitempty"`
	// Rates is the gateway's traffic per second since the previous status
	// request (absent on the first).
	Rates      *trafficRates `json:"rates,omitempty"`
	Slot       *int          `json:"slot,omitempty"`
	Generation *int          `json:"generation,omitempty"`
	Ready      *bool         `json:"ready,omitempty"`
	Restarts   *int          `json:"restarts,omitempty"`
	// Worker is the worker's counters (busy, batches, messages…); nil when
	// the process did not answer in time.
	Worker *worker.Stats `json:"worker,omitempty"`
	// Bus is the state of the worker's NATS connection.
	Bus string `json:"bus,omitempty"`
	// Failing says a user process exited 5 times within a minute: its
	// restarts are backed off (30s). LastExit is its latest exit.
	Failing  bool   `json:"failing,omitempty"`
	LastExit string `json:"last_exit,omitempty"`
}

// trafficRates is traffic per second over the last Seconds.
type trafficRates struct {
	Seconds     float64 `json:"seconds"`
	MessagesIn  float64 `json:"messages_in"`
	MessagesOut float64 `json:"messages_out"`
	BytesIn     float64 `json:"bytes_in"`
	BytesOut    float64 `json:"bytes_out"`
}

// printStatus writes rep as a table.
func printStatus(w io.Writer, rep *statusReport) {
	fmt.Fprintf(w, "gatework %s, app %s\n", rep.Version, rep.App)
	fmt.Fprintf(w, "%-8s %8s %10s %10s  %s\n", "ROLE", "PID", "UPTIME", "RSS", "DETAILS")
	for _, p := range rep.Processes {
		var d []string
		if p.Connections != nil {
			d = append(d, fmt.Sprintf("connections=%d", *p.Connections))
		}
		if g := p.Gateway; g != nil {
			d = append(d, fmt.Sprintf("uids=%d groups=%d msgs_in=%d msgs_out=%d bytes_in=%d bytes_out=%d",
				g.UIDs, g.Groups, g.MessagesIn, g.MessagesOut, g.BytesIn, g.BytesOut))
			if r := p.Rates; r != nil {
				d = append(d, fmt.Sprintf("rate(%.0fs): msgs_in=%.1f/s msgs_out=%.1f/s bytes_in=%.0f/s bytes_out=%.0f/s",
					r.Seconds, r.MessagesIn, r.MessagesOut, r.BytesIn, r.BytesOut))
			}
			d = append(d, fmt.Sprintf("accepted=%d events=%d redelivered=%d in_flight=%d parked=%d",
				g.Accepted, g.EventsSent, g.Redelivered, g.InFlight, g.Parked))
		}
		if p.Slot != nil {
			d = append(d, fmt.Sprintf("slot=%d generation=%d ready=%t restarts=%d", *p.Slot, *p.Generation, *p.Ready, *p.Restarts))
		}
		if p.Role == "process" {
			d = append(d, fmt.Sprintf("name=%s generation=%d ready=%t restarts=%d", p.Name, *p.Generation, *p.Ready, *p.Restarts))
			if p.Failing {
				d = append(d, "FAILING")
			}
			if p.LastExit != "" {
				d = append(d, fmt.Sprintf("last_exit=%q", p.LastExit))
			}
		}
		if ws := p.Worker; ws != nil {
			d = append(d, fmt.Sprintf("busy=%d waiting=%d batches=%d messages=%d", ws.Busy, ws.Waiting, ws.Batches, ws.Messages))
			if tk := ws.Tasks; p.Role == "task" || tk.Taken > 0 || tk.Lost > 0 {
				var t taskTotals
				t.add(tk)
				d = append(d, "tasks: "+t.String())
			}
		}
		if p.Bus != "" {
			d = append(d, "bus="+p.Bus)
		}
		fmt.Fprintf(w, "%-8s %8d %10s %10s  %s\n", p.Role, p.PID, p.Uptime, formatBytes(p.RSSBytes), strings.Join(d, " "))
	}
	if c := rep.Workers; c != nil {
		fmt.Fprintf(w, "workers: %d crashes, %d restarts, %d reloads, %d failed reloads\n",
			c.Crashes, c.Restarts, c.Reloads, c.FailedReloads)
	}
	if c := rep.Gateways; c != nil {
		fmt.Fprintf(w, "gateway processes: %d crashes, %d restarts\n", c.Crashes, c.Restarts)
	}
	if t := rep.Tasks; t != nil {
		fmt.Fprintf(w, "tasks: %s\n", t)
	}
}

// formatBytes writes n in MiB with one decimal ("-" for 0: unknown).
func formatBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}
