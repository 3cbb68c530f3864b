package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// Version is the version `gatework version` prints. Release builds set it
// with -ldflags "-X github.com/gatework/gatework/cli.Version=v1.2.3"; when
// empty, the module version from the build info is used.
var Version = ""

// App is an application the in-process worker can run: `start --app
// <Name>` or worker.app in the file.
type App struct {
	// Name selects the app; it must not be empty or "none".
	Name string
	// Description is shown in the help of --app.
	Description string
	// Handlers are the app's event handlers.
	Handlers worker.Handlers
	// Processes are the app's user processes (Swoole's addProcess): the
	// master of `start` runs each in a process of its own, supervised
	// (docs/tasks.md, "User processes").
	Processes []worker.Process
}

// Main runs the command line with os.Args and returns the exit code: 0 on
// success, 1 when the command failed (its error is printed), 2 when apps
// are malformed. It is all a main function needs:
//
//	func main() {
//		os.Exit(cli.Main(cli.App{Name: "myapp", Handlers: myHandlers}))
//	}
//
// The first app is the default of --app; "none" (no in-process worker) is
// always available. Main blocks for as long as the command runs: `start`
// until SIGINT or SIGTERM.
func Main(apps ...App) int {
	cmd, err := NewCommand(apps...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cmd.Use = filepath.Base(os.Args[0])
	if err := cmd.Execute(); err != nil {
		return 1
	}
	return 0
}

// NewCommand returns the root command with the subcommands start, config
// (and config check) and version, for apps (see Main). Run it with
// Execute or ExecuteContext: cancelling the context stops `start` as a
// signal would. Errors are printed as "Error: …" on the command's error
// output and returned.
func NewCommand(apps ...App) (*cobra.Command, error) {
	seen := map[string]bool{}
	for _, a := range apps {
		switch {
		case a.Name == "" || a.Name == appNone:
			return nil, fmt.Errorf("cli: app name %q is reserved", a.Name)
		case seen[a.Name]:
			return nil, fmt.Errorf("cli: app %q given twice", a.Name)
		}
		seen[a.Name] = true
		if err := worker.CheckProcesses(a.Processes); err != nil {
			return nil, fmt.Errorf("cli: app %q: %w", a.Name, err)
		}
	}
	r := &runner{apps: apps, environ: os.Environ}
	root := &cobra.Command{
		Use:   "gatework",
		Short: "gatework: a distributed long-connection server (WebSocket and TCP gateways, workers, NATS)",
		Long: `gatework holds WebSocket and TCP clients in gateways, runs your handlers in
workers and offers one API (HTTP and Go) to reach the clients; the parts
talk over NATS, embedded by default.

  gatework                     the control panel (help lists its commands)
  gatework start               WebSocket 127.0.0.1:7272, TCP 127.0.0.1:7273,
                               HTTP API 127.0.0.1:7280, the echo app
  gatework start --app chat    the demo chat room instead
  gatework start -d            in the background; then reload, status, stop
  gatework config              the effective configuration
  gatework config check -c f   validate a configuration file

The configuration is one YAML file (-c), GATEWORK_* environment variables
and flags, in that order of precedence; docs/config.md lists every key.`,
		// Errors are printed by cobra as "Error: …"; usage is not
		// repeated after them (unknown commands and flags say where
		// --help is).
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return r.panel(cmd)
		},
	}
	root.PersistentFlags().StringVarP(&r.configPath, "config", "c", "",
		"configuration file (YAML); default $GATEWORK_CONFIG, else none")
	root.AddCommand(r.startCommand(), r.restartCommand(), r.reloadCommand(), r.stopCommand(),
		r.statusCommand(), r.configCommand(), versionCommand(), r.workerCommand(),
		r.processCommand(), r.gatewayCommand(), r.apiCommand())
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		hint := "Run '" + cmd.CommandPath() + " --help' for usage."
		return fmt.Errorf("%w\n%s", err, hint)
	})
	return root, nil
}

// runner holds what the commands share.
type runner struct {
	apps       []App
	configPath string
	environ    func() []string
	flags      overrides
	daemon     bool // start -d, restart -d
	force      bool // stop -f
	jsonOut    bool // status --json
}

// appNames returns the names worker.app accepts besides none.
func (r *runner) appNames() []string {
	names := make([]string, len(r.apps))
	for i, a := range r.apps {
		names[i] = a.Name
	}
	return names
}

func (r *runner) defaultApp() string {
	if len(r.apps) == 0 {
		return appNone
	}
	return r.apps[0].Name
}

// path returns the configuration file: -c, else $GATEWORK_CONFIG.
func (r *runner) path() string {
	if r.configPath != "" {
		return r.configPath
	}
	for _, kv := range r.environ() {
		if v, ok := strings.CutPrefix(kv, "GATEWORK_CONFIG="); ok {
			return v
		}
	}
	return ""
}

// load builds the effective configuration: defaults < file < environment
// < flags, then validates it. The error lists every problem.
func (r *runner) load(cmd *cobra.Command) (Config, error) {
	c, err := Load(DefaultConfig(r.defaultApp()), r.path(), r.environ())
	var probs []*KeyError
	var ce *ConfigError
	if errors.As(err, &ce) {
		probs = append(probs, ce.Problems...)
	} else if err != nil {
		return c, err
	}
	probs = append(probs, r.flags.apply(cmd, &c)...)
	if err := c.Validate(r.appNames()); errors.As(err, &ce) {
		probs = append(probs, ce.Problems...)
	}
	if len(probs) > 0 {
		return c, invalidConfig(probs)
	}
	return c, nil
}

// invalidConfig is the error of a configuration with problems.
func invalidConfig(probs []*KeyError) error {
	n := "1 problem"
	if len(probs) > 1 {
		n = fmt.Sprintf("%d problems", len(probs))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration, %s:", n)
	for _, p := range probs {
		b.WriteString("\n  " + p.Error())
	}
	return &invalidConfigError{msg: b.String(), ConfigError: ConfigError{Problems: probs}}
}

// invalidConfigError is a *ConfigError whose message lists the problems
// under a heading.
type invalidConfigError struct {
	msg string
	ConfigError
}

func (e *invalidConfigError) Error() string { return e.msg }
func (e *invalidConfigError) Unwrap() error { return &e.ConfigError }

// overrides are the flags that set configuration keys.
type overrides struct {
	values map[string]*string
}

// overrideFlags are the flags that override keys: flag name, key path (or
// "listener:<name>" for a listener's address), usage.
var overrideFlags = []struct{ flag, key, usage string }{
	{"app", "worker.app", "the in-process worker's app (%s), or none for workers in other processes"},
	{"ws", "listener:ws", "address of the WebSocket listener named ws (default " + DefaultWSAddr + ")"},
	{"tcp", "listener:tcp", "address of the TCP listener named tcp (default " + DefaultTCPAddr + ")"},
	{"http", "http.addr", "address of the HTTP API and /healthz (default " + DefaultHTTPAddr + "; \"\" for none)"},
	{"nats-url", "nats.url", "URL of an external NATS instead of the embedded one"},
	{"nats-listen", "nats.listen", "host:port where the embedded NATS also accepts workers of other processes"},
	{"workers", "worker.processes", "worker processes the master runs (default: the number of CPUs; 0 for one worker inside the master)"},
	{"webhook", "worker.webhook.url", "URL of an HTTP backend that serves the events (webhook mode, docs/webhook.md) instead of an app"},
	{"log-level", "log.level", "debug, info, warn or error (default info)"},
	{"log-format", "log.format", "text or json (default text)"},
}

// add registers the override flags on cmd.
func (o *overrides) add(cmd *cobra.Command, appNames []string) {
	if o.values == nil {
		o.values = map[string]*string{}
	}
	for _, f := range overrideFlags {
		p, ok := o.values[f.flag]
		if !ok {
			p = new(string)
			o.values[f.flag] = p
		}
		usage := f.usage
		if strings.Contains(usage, "%s") {
			usage = fmt.Sprintf(usage, strings.Join(appNames, ", "))
		}
		cmd.Flags().StringVar(p, f.flag, "", usage)
	}
}

// apply sets the keys of the flags given on cmd's command line.
func (o *overrides) apply(cmd *cobra.Command, c *Config) []*KeyError {
	var probs []*KeyError
	for _, f := range overrideFlags {
		fl := cmd.Flags().Lookup(f.flag)
		if fl == nil || !fl.Changed {
			continue
		}
		val, where := *o.values[f.flag], "flag --"+f.flag
		var err error
		if name, ok := strings.CutPrefix(f.key, "listener:"); ok {
			err = c.SetListenerAddr(name, val, where)
		} else {
			err = c.Set(f.key, val, where)
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			probs = append(probs, ce.Problems...)
		}
	}
	return probs
}

func (r *runner) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration as YAML (secrets masked)",
		Long: `Print the configuration start would use, as YAML: the defaults, overlaid by
the file (-c), the GATEWORK_* environment variables and the flags, with the
listeners' defaults filled in. Secrets (http.token, nats.password,
nats.token) are masked. Exits 1, naming every bad key, if it is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.load(cmd)
			if err != nil {
				return err
			}
			out, err := c.Effective().Masked().YAML()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, "# gatework effective configuration: defaults < file < GATEWORK_* env < flags")
			_, err = w.Write(out)
			return err
		},
	}
	r.flags.add(cmd, r.appNames())
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration (file, environment and flags); exit 1 naming each bad key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := r.load(cmd); err != nil {
				return err
			}
			what := r.path()
			if what == "" {
				what = "defaults"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration OK\n", what)
			return nil
		},
	}
	r.flags.add(check, r.appNames())
	users := &cobra.Command{
		Use:   "nats-users",
		Short: "Print the authorization block of an external nats-server: one least-privilege user per role",
		Long: `Print the authorization block of a nats-server configuration file that gives
each role of a cluster on an external NATS its own user with only the
permissions it needs, for this configuration's prefix: gatework-gateway
('gatework gateway'), gatework-worker ('gatework worker' and your workers),
gatework-api ('gatework api', the Go package api) and gatework-node
('gatework start' and its worker processes). nats-server reads each
password from the environment variable named in the block. See
docs/security.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.load(cmd)
			if err != nil {
				return err
			}
			subj, err := bus.NewSubjects(c.Prefix)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), bus.AuthorizationConfig(subj))
			return err
		},
	}
	r.flags.add(users, r.appNames())
	cmd.AddCommand(check, users)
	return cmd
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "gatework %s %s %s/%s\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

// version returns Version, or the module version of the build.
func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
