// Package natsembed runs the nats-server that a single-machine node embeds:
// in-process connections for the node's own roles, an optional listener
// for worker processes, generated credentials, and each role's bus
// permissions (bus.Permissions) enforced by the server. Only node and cli
// import it, so that programs that only talk to the bus (api, worker) do
// not link nats-server.
package natsembed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/gatework/gatework/bus"
)

// The users a Server makes up at each start. Their passwords are
// random and only handed out through ConnectOptions, WorkerOptions and
// GatewayOptions.
const (
	// NodeUser is the user of the node's own in-process connections: it
	// may publish and subscribe to anything.
	NodeUser = "gatework-node"
	// WorkerUser is the user of worker processes: see WorkerOptions.
	WorkerUser = "gatework-worker"
	// GatewayUser is the user of the gateway processes a master runs
	// (gateway.processes above 1): see GatewayOptions.
	GatewayUser = "gatework-gateway-process"
)

// DefaultMaxPayload is Config.MaxPayload's default: 8 MiB.
const DefaultMaxPayload = 8 << 20

// Config configures a Server. The zero value works: a
// server without a listener that requires credentials from every client
// (ConnectOptions carries them).
type Config struct {
	// Listen is the host:port to accept NATS clients on, for workers in
	// other processes. Empty means no listener: in-process connections only.
	Listen string
	// User and Password, when set, name one more user with full access
	// (unless UserRole), for the gateways of other processes (and the workers and API
	// clients configured with them): give them only to programs trusted
	// like a gateway, which reads every client's traffic. Empty means only
	// the generated users (NodeUser, WorkerUser) exist. User must not be
	// one of those.
	User, Password string
	// UserRole, when set, gives User only the permissions of that role
	// (bus.Permissions) instead of full access: bus.RoleWorker for workers on
	// other machines, RoleGateway for gateways. Its connections must then
	// use bus.Subjects.Inbox(UserRole) as their inbox prefix. Empty means full
	// access. Needs User.
	UserRole bus.Role
	// Prefix is the subject prefix the WorkerUser's permissions and the
	// inbox prefixes of ConnectOptions and WorkerOptions are written for;
	// "" means bus.DefaultPrefix.
	Prefix string
	// MaxPayload is the largest message the server accepts; 0 means
	// DefaultMaxPayload.
	MaxPayload int32
	// TLSCertFile and TLSKeyFile are PEM files of the listener's
	// certificate and key: the listener then accepts TLS clients only.
	// Empty means plain TCP. In-process connections never use TLS. Both or
	// neither; they need Listen.
	TLSCertFile, TLSKeyFile string
}

// Server is a nats-server running inside this process. It accepts only
// clients that present one of its users' credentials.
type Server struct {
	srv         *server.Server
	cfg         Config
	subj        bus.Subjects
	nodePass    string
	workerPass  string
	gatewayPass string
}

// Start starts an in-process nats-server and waits until it is
// ready. It makes up the passwords of NodeUser and WorkerUser.
func Start(cfg Config) (*Server, error) {
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	e := &Server{cfg: cfg, subj: subj, nodePass: randomSecret(), workerPass: randomSecret(), gatewayPass: randomSecret()}
	users, err := e.users(subj)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:            "gatework-embedded",
		NoLog:                 true,
		NoSigs:                true,
		MaxPayload:            cfg.MaxPayload,
		MaxPending:            int64(cfg.MaxPayload) * 8,
		DontListen:            cfg.Listen == "",
		Users:                 users,
		WriteDeadline:         10 * time.Second,
		PingInterval:          10 * time.Second,
		MaxPingsOut:           3,
		DisableShortFirstPing: true,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: listen %q: %w", cfg.Listen, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	if err := tlsOptions(opts, cfg); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("natsembed: server not ready within 10s")
	}
	e.srv = srv
	return e, nil
}

// users returns the server's users: NodeUser, WorkerUser and the
// configured one.
func (e *Server) users(subj bus.Subjects) ([]*server.User, error) {
	users := []*server.User{
		{Username: NodeUser, Password: e.nodePass},
		{Username: WorkerUser, Password: e.workerPass, Permissions: serverPermissions(subj, bus.RoleWorker)},
		{Username: GatewayUser, Password: e.gatewayPass, Permissions: serverPermissions(subj, bus.RoleGateway)},
	}
	switch c := e.cfg; {
	case c.User == NodeUser || c.User == WorkerUser || c.User == GatewayUser:
		return nil, fmt.Errorf("natsembed: user %q is reserved for the generated users", c.User)
	case c.User == "" && c.Password != "":
		return nil, errors.New("natsembed: password set without a user")
	case c.User != "" && c.Password == "":
		return nil, fmt.Errorf("natsembed: user %q has no password", c.User)
	case c.User == "" && c.UserRole != "":
		return nil, fmt.Errorf("natsembed: user role %q without a user", c.UserRole)
	case c.User != "":
		u := &server.User{Username: c.User, Password: c.Password}
		if c.UserRole != "" {
			if u.Permissions = serverPermissions(subj, c.UserRole); u.Permissions == nil {
				return nil, fmt.Errorf("natsembed: user role %q: not one of %v", c.UserRole, bus.Roles)
			}
		}
		users = append(users, u)
	}
	return users, nil
}

// tlsOptions sets up TLS on the listener of opts as cfg says.
func tlsOptions(opts *server.Options, cfg Config) error {
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" {
		return nil
	}
	switch {
	case cfg.TLSCertFile == "" || cfg.TLSKeyFile == "":
		return errors.New("natsembed: TLS needs both a certificate and a key file")
	case cfg.Listen == "":
		return errors.New("natsembed: TLS without a listener")
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile})
	if err != nil {
		return fmt.Errorf("natsembed: TLS: %w", err)
	}
	opts.TLSConfig = tc
	opts.TLS = true
	opts.TLSTimeout = 5
	return nil
}

// randomSecret returns 24 random bytes in hex.
func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// NATS returns the underlying nats-server.
func (e *Server) NATS() *server.Server { return e.srv }

// ClientURL returns the URL other processes use (tls:// with TLS), or ""
// without a listener.
func (e *Server) ClientURL() string {
	if e.cfg.Listen == "" {
		return ""
	}
	return e.srv.ClientURL()
}

// ConnectOptions returns bus.Options for an in-process connection to e named
// name, as NodeUser: full access, with the inbox prefix of bus.RoleNode. They
// hold a secret: never log them.
func (e *Server) ConnectOptions(name string) bus.Options {
	return bus.Options{InProcess: e.srv, User: NodeUser, Password: e.nodePass, Name: name,
		InboxPrefix: e.subj.Inbox(bus.RoleNode)}
}

// WorkerOptions returns bus.Options for a worker in another process to connect
// to ClientURL as WorkerUser, named name, with the inbox prefix of
// bus.RoleWorker: it may do what bus.Permissions gives bus.RoleWorker. URL is ""
// without a listener. They hold a secret: never log them, hand them to
// another process through its environment or a file only its user can
// read, never its command line. A TLS listener's CA is the caller's to add.
func (e *Server) WorkerOptions(name string) bus.Options {
	return bus.Options{URL: e.ClientURL(), User: WorkerUser, Password: e.workerPass, Name: name,
		InboxPrefix: e.subj.Inbox(bus.RoleWorker)}
}

// GatewayOptions returns bus.Options for a gateway in another process
// (a gateway process of the master) to connect to ClientURL as
// GatewayUser, named name, with the inbox prefix of bus.RoleGateway: it
// may do what bus.Permissions gives bus.RoleGateway. URL is "" without a
// listener. They hold a secret: the same care as WorkerOptions.
func (e *Server) GatewayOptions(name string) bus.Options {
	return bus.Options{URL: e.ClientURL(), User: GatewayUser, Password: e.gatewayPass, Name: name,
		InboxPrefix: e.subj.Inbox(bus.RoleGateway)}
}

// Shutdown stops the server and waits until it has stopped.
func (e *Server) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverPermissions returns bus.Permissions(s, role) as nats-server's
// type, or nil for an unknown role.
func serverPermissions(s bus.Subjects, role bus.Role) *server.Permissions {
	r := bus.Permissions(s, role)
	if r == nil {
		return nil
	}
	perms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: r.Publish},
		Subscribe: &server.SubjectPermission{Allow: r.Subscribe},
	}
	if r.Responses {
		// Zero means nats-server's defaults: one reply per request,
		// within two minutes.
		perms.Response = &server.ResponsePermission{}
	}
	return perms
}
