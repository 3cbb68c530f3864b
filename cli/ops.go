package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/master"
)

// daemonize starts a detached copy of this command (master.Daemonize) and
// returns once it wrote the pid file, or says why it failed.
func (r *runner) daemonize(cmd *cobra.Command, c Config) error {
	pidFile := c.pidFile()
	if pid, ok := master.RunningPID(pidFile); ok {
		return &master.AlreadyRunningError{PID: pid, PIDFile: pidFile}
	}
	exe, err := master.ProgramPath() // the detached master reloads from the same path
	if err != nil {
		return fmt.Errorf("start -d: %w", err)
	}
	var args []string
	for _, a := range os.Args[1:] {
		switch a {
		case "-d", "--daemon", "-d=true", "--daemon=true":
		case "restart":
			args = append(args, "start") // the stop part is done
		default:
			args = append(args, a)
		}
	}
	logPath := c.logFile()
	pid, err := master.Daemonize(master.DaemonConfig{
		Path: exe, Args: args, Env: append(os.Environ(), envDaemon+"=1"),
		PIDFile: pidFile, LogFile: logPath,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "gatework started in the background: pid %d, pid file %s, log %s\n", pid, pidFile, logPath)
	return nil
}

func (r *runner) restartCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Stop the running node (if any), then start (-d: in the background)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.load(cmd)
			if err != nil {
				return err
			}
			if err := r.stopMaster(cmd, c, false); err != nil && !errors.Is(err, errNotRunning) {
				return err
			}
			return r.start(cmd)
		},
	}
	r.flags.add(cmd, r.appNames())
	cmd.Flags().BoolVarP(&r.daemon, "daemon", "d", false, "run in the background (pid file, log file)")
	return cmd
}

func (r *runner) reloadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Replace the worker processes with the binary now on disk, losing no client and no event",
		Long: `Ask the running master (found through pid_file) to start new worker
processes from the binary now on disk, wait until they are ready, then let
the old ones finish the events in hand and exit. Clients stay connected and
no event is lost. If a new worker fails to start or get ready, the old ones
keep serving and reload exits 1 saying why. Without the control socket it
sends SIGUSR1 and the outcome is only in the master's log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.load(cmd)
			if err != nil {
				return err
			}
			pidFile := c.pidFile()
			pid, ok := master.RunningPID(pidFile)
			if !ok {
				return errNotRunning
			}
			resp, err := master.CallControl(master.SocketPath(pidFile), master.ControlRequest{Cmd: "reload"}, reloadTimeout+10*time.Second)
			if err != nil {
				if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
					return fmt.Errorf("reload: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "SIGUSR1 sent to pid %d (no control socket: %v); the outcome is in its log\n", pid, err)
				return nil
			}
			if !resp.OK {
				return fmt.Errorf("reload failed, the old workers keep serving: %s", resp.Error)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: new worker processes serve (pid %d)\n", pid)
			return nil
		},
	}
}

func (r *runner) stopCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the running node gracefully (-f: kill it at once)",
		Long: `Send SIGTERM to the running master (found through pid_file) and wait
until it exited: no new clients, queued messages flushed, close frames
sent, workers drained, within shutdown_timeout. -f sends SIGKILL to the
master's process group instead (its workers die with it) and removes the
files the master would have removed: the pid file, the control socket and
the bus credentials.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.load(cmd)
			if err != nil {
				return err
			}
			return r.stopMaster(cmd, c, r.force)
		},
	}
	cmd.Flags().BoolVarP(&r.force, "force", "f", false, "kill at once (SIGKILL)")
	return cmd
}

// stopMaster stops the master of c's pid file and waits until it is gone.
func (r *runner) stopMaster(cmd *cobra.Command, c Config, force bool) error {
	pidFile := c.pidFile()
	pid, ok := master.RunningPID(pidFile)
	if !ok {
		return errNotRunning
	}
	gone := func() bool { return !master.Alive(pid) }
	sig, timeout := syscall.SIGTERM, time.Duration(c.ShutdownTimeout)+30*time.Second
	if force {
		sig, timeout = syscall.SIGKILL, 10*time.Second
		// The master's process group, if it leads one (start -d).
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	} else if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for !gone() {
		if time.Now().After(deadline) {
			return fmt.Errorf("stop: pid %d still running after %v", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if force {
		// What the master would have removed at its exit. Another master
		// that started meanwhile keeps its own.
		if err := master.RemoveFiles(pidFile, masterFiles(pidFile), 5*time.Second); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "gatework killed (pid %d), its files left: %v\n", pid, err)
			return nil
		}
		fmt.Fprintf(cmd.OutOrStdout(), "gatework killed (pid %d)\n", pid)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "gatework stopped (pid %d)\n", pid)
	return nil
}

func (r *runner) statusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every process of the running node (--json for scripts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.load(cmd)
			if err != nil {
				return err
			}
			pidFile := c.pidFile()
			if _, ok := master.RunningPID(pidFile); !ok {
				return errNotRunning
			}
			resp, err := master.CallControl(master.SocketPath(pidFile), master.ControlRequest{Cmd: "status"}, 10*time.Second)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if !resp.OK || resp.Status == nil {
				return fmt.Errorf("status: %s", resp.Error)
			}
			var rep statusReport
			if err := json.Unmarshal(resp.Status, &rep); err != nil {
				return fmt.Errorf("status: bad answer: %w", err)
			}
			if r.jsonOut {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(&rep)
			}
			printStatus(cmd.OutOrStdout(), &rep)
			return nil
		},
	}
	cmd.Flags().BoolVar(&r.jsonOut, "json", false, "print JSON")
	return cmd
}
