package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/node"
)

// The roles of a cluster spread over hosts (docs/deployment.md): each runs
// alone in its process, pointed at an external NATS (nats.url).
const (
	roleGateway = "gateway"
	roleAPI     = "api"
	roleWorker  = "worker"
)

// errNoNATSURL is the error of a role command without nats.url.
var errNoNATSURL = errors.New("nats.url is required: a list of the NATS cluster's URLs (nats://a:4222,nats://b:4222), with nats.user and nats.password")

// roleFlags are the override flags each role command takes.
var roleFlags = map[string][]string{
	roleGateway: {"ws", "tcp", "http", "nats-url", "log-level", "log-format"},
	roleAPI:     {"http", "nats-url", "log-level", "log-format"},
	roleWorker:  {"app", "webhook", "nats-url", "log-level", "log-format"},
}

// addRoleFlags registers on cmd the override flags of role.
func (o *overrides) addRoleFlags(cmd *cobra.Command, role string) {
	if o.values == nil {
		o.values = map[string]*string{}
	}
	for _, f := range overrideFlags {
		if !slices.Contains(roleFlags[role], f.flag) {
			continue
		}
		p, ok := o.values[f.flag]
		if !ok {
			p = new(string)
			o.values[f.flag] = p
		}
		usage := f.usage
		if f.flag == "app" {
			usage = "the app this worker serves: worker.app (default the binary's first app)"
		}
		cmd.Flags().StringVar(p, f.flag, "", usage)
	}
}

func (r *runner) gatewayCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run a gateway process of a cluster: the listeners, over an external NATS (nats.url)",
		Long: `Run one gateway of a cluster spread over hosts: the configured listeners
(the listeners section, or --ws / --tcp) and /healthz on http.addr (health
only: the HTTP API runs in 'gatework api'; --http "" for none), connected to
the NATS cluster named by nats.url (comma-separated URLs) with nats.user and
nats.password (or nats.token, nats.nkey_seed_file, nats.creds_file). No
worker runs here: start 'gatework worker' processes. Run any number of
gateways; each announces itself on the bus and leaves on SIGINT or SIGTERM
after draining its clients (bounded by shutdown_timeout). See
docs/deployment.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return r.runRole(cmd, roleGateway) },
	}
	r.flags.addRoleFlags(cmd, roleGateway)
	return cmd
}

func (r *runner) apiCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Run an API process of a cluster: the HTTP API on http.addr, over an external NATS (nats.url)",
		Long: `Run the HTTP API (POST /api/<method>, /healthz) on http.addr for a cluster
spread over hosts, connected to the NATS cluster named by nats.url with its
credentials. It holds nothing: run as many as you like behind a load
balancer. Set http.token (GATEWORK_API_TOKEN) when http.addr is not a
loopback address. See docs/deployment.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return r.runRole(cmd, roleAPI) },
	}
	r.flags.addRoleFlags(cmd, roleAPI)
	return cmd
}

// runRole runs the node of a gateway or api process until cmd's context is
// cancelled or SIGINT / SIGTERM comes, then stops it gracefully.
func (r *runner) runRole(cmd *cobra.Command, role string) error {
	if role == roleGateway && os.Getenv(envGatewayChild) != "" {
		return r.runGatewayChild(cmd)
	}
	c, err := r.load(cmd)
	if err != nil {
		return err
	}
	if c.NATS.URL == "" {
		return fmt.Errorf("%s: %w", role, errNoNATSURL)
	}
	log := NewLogger(c.Log, cmd.ErrOrStderr()).With("role", role)
	c.Worker.App = appNone // workers run in `gatework worker` processes
	nc, err := c.NodeConfig(log)
	if err != nil {
		return err
	}
	switch role {
	case roleGateway:
		nc.HTTP.HealthOnly = true
		nc.NATS.Role = bus.RoleGateway
	case roleAPI:
		nc.NoGateway = true
		if nc.HTTP.Addr == "" {
			return fmt.Errorf("api: http.addr is empty: the api role serves the HTTP API")
		}
	}
	return runNode(cmd.Context(), nc, log, time.Duration(c.ShutdownTimeout))
}

// runNode starts a node, waits for ctx or a signal and shuts it down
// within timeout (0: defaultShutdownTimeout). A second signal during the
// shutdown kills the process.
func runNode(ctx context.Context, nc node.Config, log *slog.Logger, timeout time.Duration) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n, err := node.Start(sctx, nc)
	cancel()
	if err != nil {
		return err
	}
	var attrs []any
	if gw := n.Gateway(); gw != nil {
		attrs = append(attrs, "gateway", gw.ID())
		for _, l := range nc.Gateway.Listeners {
			name := l.Name
			if name == "" {
				name = l.Protocol
			}
			if a := n.Addr(name); a != nil {
				attrs = append(attrs, "listener_"+name, a.String())
			}
		}
	}
	if a := n.HTTPAddr(); a != nil {
		attrs = append(attrs, "http", a.String())
	}
	attrs = append(attrs, "nats", redactNATS(nc.NATS.URL))
	log.Info("ready", attrs...)
	select {
	case <-ctx.Done():
	case s := <-sigs:
		log.Info("signal received", "signal", s.String())
	}
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	if timeout <= 0 {
		timeout = defaultShutdownTimeout
	}
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer dcancel()
	if err := n.Shutdown(dctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// redactNATS hides the passwords of user:password@ in a NATS URL list.
func redactNATS(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		if _, host, ok := strings.Cut(rest, "@"); ok {
			parts[i] = scheme + "://xxxxx@" + host
		}
	}
	return strings.Join(parts, ",")
}
