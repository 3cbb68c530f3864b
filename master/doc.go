// Package master is the process lifecycle of a node's master: the pid file
// lock (LockPIDFile), the detached start (Daemonize), the control socket
// that status and reload talk to (ListenControl, CallControl), the signal
// policy (NotifySignals: SIGINT/SIGTERM stop, SIGUSR1 reloads) and the
// supervisor of the worker processes. cli wires them to the node.
//
// The Supervisor starts N
// copies of a program (the binary on disk, running its hidden `worker`
// command), waits until each reports that it is ready, restarts a child
// that crashes with back-off, replaces all children at once on Reload
// (new ones ready before the old ones are told to drain) and stops them on
// Stop.
//
// The child protocol is small: a child writes the line "ready" on its
// standard output once it serves events; it stops gracefully (finishing
// the events in hand) on SIGTERM, and also when its standard input reaches
// EOF, which happens when the master dies. On Linux a child also gets
// SIGKILL when the master dies (Pdeathsig).
package master
