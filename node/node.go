package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/console"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/procstat"
	"github.com/gatework/gatework/metrics"
	"github.com/gatework/gatework/webhook"
	"github.com/gatework/gatework/worker"
)

// Config configures a Node. It is plain data: package cli fills it from
// the configuration file, the environment and the flags. Every field says
// what its zero value means.
type Config struct {
	// Prefix is the bus subject prefix shared by the gateway, the API
	// client and the worker; "" means bus.DefaultPrefix. It overrides
	// Gateway.Prefix and API.Prefix.
	Prefix string
	// Gateway configures the gateway; it needs at least one listener.
	// Its Prefix and Logger are set by the node.
	Gateway gateway.Config
	// NATS says which bus to use: an embedded server (URL empty) or an
	// external one.
	NATS NATSConfig
	// API configures the API client used by the HTTP API and the
	// in-process worker. Its Prefix and Logger are set by the node.
	API api.Config
	// HTTP configures the HTTP server (API and health check).
	HTTP HTTPConfig
	// Worker configures the in-process worker.
	Worker WorkerConfig
	// Webhook, when its URL is set, serves the events in this process with
	// an HTTP backend (package webhook) on a worker connection of its own,
	// besides (or instead of) Worker.Handlers. Its Prefix and Logger are
	// set by the node. An empty URL means no webhook worker.
	Webhook webhook.Config
	// Logger receives the node's logs and is handed to every part; nil
	// means slog.Default().
	Logger *slog.Logger
	// NoGateway, when set, runs no gateway: the node is an API process
	// (the HTTP API and the API client over the bus) and Gateway is
	// ignored. False means a gateway with Gateway's listeners.
	NoGateway bool
	// NoAPI, when set, runs no API client (API returns nil): a gateway
	// process whose HTTP API and workers run elsewhere, which then
	// neither opens the API's bus connection nor follows the membership
	// heartbeats a second time. It needs an empty HTTP.Addr and no
	// in-process worker or webhook. False means an API client.
	NoAPI bool
}

// NATSConfig says how the node reaches the bus. The embedded server
// always requires credentials (see natsembed.Server); an external one must be
// given some (see node/busauth.go).
type NATSConfig struct {
	// URL of an external NATS (comma-separated for a cluster). Empty means
	// an embedded nats-server started in this process.
	URL string
	// User and Password: with URL, the credentials to present; without,
	// one more user with full access that the embedded server accepts
	// besides the generated ones, for gateways and workers of other
	// processes configured with it. Empty means none.
	User, Password string
	// Token, NKeySeedFile and CredsFile authenticate to an external NATS
	// (URL set); the embedded server does not support them. Empty means
	// not used.
	Token, NKeySeedFile, CredsFile string
	// InsecureNoAuth lets the node connect to an external NATS without
	// any credentials. False means Start refuses an URL without them
	// (ErrNoBusCredentials). Not used without URL.
	InsecureNoAuth bool
	// TLS configures TLS to the bus; zero means none (an external tls://
	// URL still verifies the server with the system roots).
	TLS TLSFiles
	// Listen is the host:port on which the embedded server also accepts
	// NATS clients, for workers in other processes (port 0 picks a free
	// port, see Node.NATSURL). Empty means in-process connections only.
	// Not used with URL.
	Listen string
	// MaxPayload is the largest bus message the embedded server accepts;
	// 0 means 8 MiB. Not used with URL.
	MaxPayload int32
	// UserRole, with User and no URL, gives the embedded server's extra
	// user only that role's permissions (bus.Permissions) instead of full
	// access. Empty means full access. Not used with URL.
	UserRole bus.Role
	// Role is what the credentials may do on an external NATS
	// (bus.Permissions): it picks the inbox prefix of the node's
	// connections (bus.Subjects.Inbox), which that role may subscribe to.
	// Empty means bus.RoleAPI with NoGateway, else bus.RoleNode. With the
	// embedded server the node has full access and uses RoleNode's.
	Role bus.Role
}

// HTTPConfig configures the node's HTTP server.
type HTTPConfig struct {
	// Addr is the host:port to serve on (port 0 picks a free port, see
	// Node.HTTPAddr). Empty means no HTTP server.
	Addr string
	// Token is a bearer token of the HTTP API with scope admin. Empty
	// means none.
	Token string
	// Tokens are named bearer tokens with scopes (see httpapi.Config).
	// With neither Token nor Tokens the API and /metrics serve loopback
	// callers only (logged as a warning).
	Tokens []httpapi.Token
	// MaxBodyBytes bounds a request body; 0 means httpapi's default
	// (8 MiB).
	MaxBodyBytes int64
	// Timeout bounds one API call; 0 means httpapi's default (10s).
	Timeout time.Duration
	// HealthOnly, when set, serves /healthz only, not the API (a gateway
	// process of a cluster whose API runs elsewhere). False means both,
	// and the web console at / (package console).
	HealthOnly bool
	// ReadHeaderTimeout bounds reading a request's headers (for the first
	// request of a connection, from its accept). 0 means
	// DefaultHTTPReadHeaderTimeout (10s).
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body: the whole body must
	// arrive within it from the end of the headers; the API then answers
	// 408 request_timeout and closes the connection. 0 means
	// DefaultHTTPBodyTimeout (30s).
	BodyTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection waits for its
	// next request. 0 means DefaultHTTPIdleTimeout (2m).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing an answer, from its first byte; a
	// caller that does not read it in time loses the connection. 0 means
	// DefaultHTTPWriteTimeout (10s).
	WriteTimeout time.Duration
	// MaxConns bounds the open HTTP connections. Beyond it, HealthConns
	// more are accepted for /healthz, /readyz and /metrics only (other
	// paths get 503 too_many_connections with Retry-After), one request
	// each within 5 s; beyond those, new connections wait in the listen
	// backlog until one closes. 0 means DefaultHTTPMaxConns (256). Start
	// lowers it (with a warning) so that MaxConns + HealthConns is at most
	// a quarter of the process's open-file limit.
	MaxConns int
	// HealthConns is the reserve of connections kept for health checks
	// and metrics beyond MaxConns. 0 means DefaultHTTPHealthConns (8).
	HealthConns int
	// ChatPage, when set, also serves the chat demo's page at /chat; it
	// dials the gateway's first WebSocket listener on the host the page
	// was loaded from. False (or a node without a WebSocket listener, or
	// HealthOnly) means no chat page.
	ChatPage bool
}

// WorkerConfig configures the in-process worker.
type WorkerConfig struct {
	// Handlers are the app the worker runs. Nil means no in-process
	// worker: workers run in other processes (set NATS.Listen or use an
	// external NATS so that they can reach the bus).
	Handlers *worker.Handlers
	// App names the app in logs; "" means "app".
	App string
	// Concurrency is how many events the worker handles at once; 0 means
	// the worker's default (64 × GOMAXPROCS).
	Concurrency int
}

// Node is one running gatework node. Its methods are safe for concurrent
// use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	emb   *natsembed.Server
	subj  bus.Subjects
	conns []*nats.Conn
	gwNC  *nats.Conn // nil with NoGateway
	apiNC *nats.Conn
	gw    *gateway.Server // nil with NoGateway
	// gwLoad is gw once started, for the API clients' LocalOverloaded.
	gwLoad atomic.Pointer[gateway.Server]
	api    *api.Client
	w      *worker.Worker
	wapi   *api.Client   // the worker's, on its connection
	wNC    *nats.Conn    // the in-process worker's connection; nil without one
	hook   *webhook.Hook // the webhook worker; nil without one

	httpSrv  *http.Server
	httpAddr net.Addr
	httpDone chan struct{}

	started time.Time

	shutdownOnce sync.Once
	shutdownErr  error
	shutdownDone chan struct{}
}

// connection names shown by the NATS server.
const (
	connGateway = "gatework-gateway"
	connAPI     = "gatework-api"
	connWorker  = "gatework-worker"
	connWebhook = "gatework-webhook"
)

// Start starts a node: the bus, the in-process worker (so that the first
// client finds it), the gateway and the HTTP server, in that order. It
// returns once the node accepts clients; on failure everything it started
// is stopped again. ctx bounds the start only: cancelling it later does
// not stop the node, Shutdown does.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{
		started:      time.Now(),
		cfg:          cfg,
		log:          cfg.Logger,
		shutdownDone: make(chan struct{}),
	}
	if err := n.start(ctx); err != nil {
		// Nothing was handed out yet: give the teardown a fresh bound.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if serr := n.Shutdown(sctx); serr != nil {
			n.log.Warn("cleanup after failed start", "err", serr)
		}
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	cfg := &n.cfg
	subj, err := bus.NewSubjects(cfg.Prefix)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.subj = subj
	if err := n.startBus(); err != nil {
		return err
	}
	if !cfg.NoGateway {
		if n.gwNC, err = n.connect(connGateway); err != nil {
			return err
		}
	}
	if cfg.NoAPI {
		if cfg.HTTP.Addr != "" || cfg.Worker.Handlers != nil || cfg.Webhook.URL != "" || cfg.NoGateway {
			return errors.New("node: NoAPI needs a gateway and no HTTP server, in-process worker or webhook")
		}
	} else {
		apiNC, err := n.connect(connAPI)
		if err != nil {
			return err
		}
		n.apiNC = apiNC
		apiCfg := cfg.API
		apiCfg.Prefix = cfg.Prefix
		apiCfg.Logger = n.log.With("component", "api")
		apiCfg.LocalOverloaded = n.localOverloaded
		if n.api, err = api.New(apiNC, apiCfg); err != nil {
			return fmt.Errorf("node: api client: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("node: start: %w", err)
	}
	if cfg.Worker.Handlers != nil {
		if err := n.startWorker(); err != nil {
			return err
		}
	}
	if cfg.Webhook.URL != "" {
		if err := n.startWebhook(); err != nil {
			return err
		}
	}
	if !cfg.NoGateway {
		if err := n.startGateway(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("node: start: %w", err)
	}
	if cfg.HTTP.Addr != "" {
		if err := n.startHTTP(); err != nil {
			return err
		}
	}
	if n.gw == nil {
		n.log.Info("node ready (API only, no gateway)")
		return nil
	}
	n.log.Info("node ready", "gateway", n.gw.ID())
	return nil
}

func (n *Node) startGateway() error {
	gwCfg := n.cfg.Gateway
	gwCfg.Prefix = n.cfg.Prefix
	gwCfg.Logger = n.log.With("component", "gateway")
	if gwCfg.LocalWorkers == nil && n.w != nil {
		gwCfg.LocalWorkers = n.inProcessWorker
		if gwCfg.LocalTasks == nil && n.cfg.Worker.Handlers != nil && n.cfg.Worker.Handlers.OnTask != nil {
			gwCfg.LocalTasks = func() *bus.TaskStats {
				ts := n.w.Stats().Tasks
				return &bus.TaskStats{Queued: uint64(ts.Queued), InFlight: uint64(ts.Running)}
			}
		}
	}
	gw, err := gateway.New(n.gwNC, gwCfg)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := gw.Start(); err != nil { // cleans up after itself on failure
		return fmt.Errorf("node: %w", err)
	}
	n.gw = gw
	n.gwLoad.Store(gw)
	n.checkPayload()
	return nil
}

// localOverloaded reports whether the node's own gateway is overloaded
// (api.Config.LocalOverloaded).
func (n *Node) localOverloaded() bool {
	gw := n.gwLoad.Load()
	return gw != nil && gw.Overloaded()
}

// startBus starts the embedded server, unless an external URL is set.
func (n *Node) startBus() error {
	nc := n.cfg.NATS
	if nc.URL != "" {
		return n.checkExternal()
	}
	e, err := natsembed.Start(natsembed.Config{
		Listen:      nc.Listen,
		User:        nc.User,
		Password:    nc.Password,
		UserRole:    nc.UserRole,
		Prefix:      n.cfg.Prefix,
		MaxPayload:  nc.MaxPayload,
		TLSCertFile: nc.TLS.CertFile,
		TLSKeyFile:  nc.TLS.KeyFile,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.emb = e
	if nc.Listen == "" {
		n.log.Info("bus: embedded NATS, in-process only")
		return nil
	}
	n.log.Info("bus: embedded NATS listening for workers (credentials required)", "url", e.ClientURL(),
		"tls", nc.TLS.CertFile != "")
	return nil
}

// connect opens one bus connection named name, logging its outages.
func (n *Node) connect(name string) (*nats.Conn, error) {
	log := n.log.With("conn", name)
	o := n.busOptions(name)
	o.Errors = bus.NewAsyncErrors(log)
	c, err := bus.Connect(o)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.conns = append(n.conns, c)
	c.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		if err != nil {
			log.Warn("bus: disconnected", "err", err)
		}
	})
	c.SetReconnectHandler(func(c *nats.Conn) { log.Info("bus: reconnected", "url", bus.RedactURL(c.ConnectedUrl())) })
	return c, nil
}

func (n *Node) startWorker() error {
	wc, err := n.connect(connWorker)
	if err != nil {
		return err
	}
	app := n.cfg.Worker.App
	if app == "" {
		app = "app"
	}
	// The worker's own API client on the worker's connection: a gateway
	// executes what one connection publishes in order, so a handler's API
	// calls and its actions reach a client in the order it made them.
	apiCfg := n.cfg.API
	apiCfg.Prefix = n.cfg.Prefix
	apiCfg.Logger = n.log.With("component", "api")
	apiCfg.LocalOverloaded = n.localOverloaded
	wapi, err := api.New(wc, apiCfg)
	if err != nil {
		return fmt.Errorf("node: worker api client: %w", err)
	}
	n.wapi = wapi
	w, err := worker.New(wc, wapi, worker.Config{
		Prefix:      n.cfg.Prefix,
		Concurrency: n.cfg.Worker.Concurrency,
		Logger:      n.log.With("component", "worker", "app", app),
	}, *n.cfg.Worker.Handlers)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.w, n.wNC = w, wc // the worker logs its own start
	return nil
}

// startWebhook starts the webhook worker on a connection of its own. A
// backend that does not answer yet does not fail the start: the hook
// waits for it while the gateway holds the events.
func (n *Node) startWebhook() error {
	c, err := n.connect(connWebhook)
	if err != nil {
		return err
	}
	cfg := n.cfg.Webhook
	cfg.Prefix = n.cfg.Prefix
	cfg.Logger = n.log.With("component", "webhook")
	h, err := webhook.New(c, cfg)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := h.Start(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.hook = h
	return nil
}

// Webhook returns the webhook worker, or nil without one.
func (n *Node) Webhook() *webhook.Hook { return n.hook }

// inProcessWorker describes the in-process worker for the gateway's
// stats answer.
func (n *Node) inProcessWorker() []bus.WorkerStats {
	pid := os.Getpid()
	rss, _ := procstat.RSS(pid)
	ws := n.w.Stats()
	state := gateway.WorkerIdle
	if ws.Busy > 0 {
		state = gateway.WorkerBusy
	}
	return []bus.WorkerStats{{
		State:         state,
		Busy:          ws.Busy,
		ID:            n.w.ID(),
		PID:           pid,
		StartedUnixMs: n.started.UnixMilli(),
		RSSBytes:      rss,
		Bus:           n.wNC.Status().String(),
		Handled:       ws.Connects + ws.Messages + ws.Closes,
	}}
}

// checkPayload warns when a listener accepts messages the bus cannot carry.
func (n *Node) checkPayload() {
	limit := n.gwNC.MaxPayload()
	for _, l := range n.cfg.Gateway.Listeners {
		size := int64(l.MaxMessage)
		if size == 0 {
			size = 1 << 20
		}
		name := l.Name
		if name == "" {
			name = l.Protocol
		}
		if size+64<<10 > limit {
			n.log.Warn("listener max_message is close to or above the bus max payload: large messages will fail",
				"listener", name, "max_message", size, "max_payload", limit)
		}
	}
}

func (n *Node) startHTTP() error {
	hc := n.cfg.HTTP
	lim, err := hc.limits()
	if err != nil {
		return err
	}
	if asked, files := lim.maxConns, openFileLimit(); lim.fitFileLimit(files) {
		n.log.Warn("http: max_conns lowered to a quarter of the open-file limit, less health_conns: raise the limit (ulimit -n, LimitNOFILE) to allow more",
			"max_conns", asked, "now", lim.maxConns, "health_conns", lim.healthConns, "open_files", files)
	}
	h, err := httpapi.New(n.api, httpapi.Config{
		Token:        hc.Token,
		Tokens:       hc.Tokens,
		MaxBodyBytes: hc.MaxBodyBytes,
		Timeout:      hc.Timeout,
		// The node logs its own warning about a missing token, with
		// the address and what to do.
		Logger: slog.New(dropMessage{n.log.Handler().WithAttrs([]slog.Attr{slog.String("component", "httpapi")}), "httpapi: no token configured"}),
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	mux := http.NewServeMux()
	if !hc.HealthOnly {
		mux.Handle("/api", h)
		mux.Handle("/api/", h)
	}
	if !hc.HealthOnly {
		ch, err := n.consoleHandler()
		if err != nil {
			return err
		}
		mux.Handle("/", ch)
	}
	mux.HandleFunc("/healthz", serveHealth)
	mux.HandleFunc("/readyz", n.serveReady)
	src := metrics.Sources{API: h, Bus: n.busConn()}
	if n.gw != nil { // a nil *gateway.Server would be a non-nil interface
		src.Gateway = n.gw
	}
	if n.hook != nil {
		src.Webhook = n.hook
	}
	mux.Handle("/metrics", h.Require(httpapi.ScopeMetrics, metrics.Handler(src)))
	ln, err := net.Listen("tcp", hc.Addr)
	if err != nil {
		return fmt.Errorf("node: http listen: %w", err)
	}
	n.httpAddr = ln.Addr()
	ln = newConnLimiter(ln, lim.maxConns, lim.healthConns, n.log.With("component", "http"))
	n.httpSrv = &http.Server{
		Handler:           guard(mux, lim, !hc.HealthOnly),
		ReadHeaderTimeout: lim.readHeader,
		IdleTimeout:       lim.idle,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.httpDone = make(chan struct{})
	go func() {
		defer close(n.httpDone)
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http: server stopped", "err", err)
		}
	}()
	base := "http://" + n.httpAddr.String()
	if hc.HealthOnly {
		n.log.Info("http: listening (health and metrics only)", "addr", n.httpAddr.String(), "health", base+"/healthz",
			"ready", base+"/readyz", "metrics", base+"/metrics")
		return nil
	}
	attrs := []any{"addr", n.httpAddr.String(), "console", base + "/", "api", base + "/api", "health", base + "/healthz",
		"ready", base + "/readyz", "metrics", base + "/metrics"}
	if _, addr := n.firstWS(); n.cfg.HTTP.ChatPage && addr != nil {
		attrs = append(attrs, "chat", base+"/chat")
	}
	n.log.Info("http: listening", attrs...)
	if hc.Token == "" && len(hc.Tokens) == 0 {
		n.log.Warn("http: WARNING: no API token is set: the HTTP API and /metrics serve loopback clients only; set http.tokens, http.token or GATEWORK_API_TOKEN",
			"addr", n.httpAddr.String())
	}
	return nil
}

// consoleHandler is the web console, with the chat page when asked for
// and a WebSocket listener exists.
func (n *Node) consoleHandler() (http.Handler, error) {
	var cc console.Config
	if n.cfg.HTTP.ChatPage {
		if l, addr := n.firstWS(); addr != nil {
			cc.Chat = &console.ChatConfig{Port: addr.Port, Path: l.Path, TLS: l.TLS != nil}
		} else {
			n.log.Warn("http: no chat page: the node has no WebSocket listener")
		}
	}
	h, err := console.New(cc)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return h, nil
}

// firstWS returns the config and address of the gateway's first
// WebSocket listener, or a nil address.
func (n *Node) firstWS() (gateway.ListenerConfig, *net.TCPAddr) {
	if n.gw == nil {
		return gateway.ListenerConfig{}, nil
	}
	for _, l := range n.cfg.Gateway.Listeners {
		if l.Protocol != "ws" {
			continue
		}
		name := l.Name
		if name == "" {
			name = l.Protocol
		}
		if a, ok := n.gw.Addr(name).(*net.TCPAddr); ok {
			return l, a
		}
	}
	return gateway.ListenerConfig{}, nil
}

// Addr returns the address of the gateway listener named name, or nil
// (also without a gateway).
func (n *Node) Addr(name string) net.Addr {
	if n.gw == nil {
		return nil
	}
	return n.gw.Addr(name)
}

// HTTPAddr returns the HTTP server's address, or nil without one.
func (n *Node) HTTPAddr() net.Addr { return n.httpAddr }

// NATSURL returns the URL on which the embedded NATS accepts workers of
// other processes, or "" (external NATS, or embedded without NATS.Listen).
// It holds no credentials: see WorkerOptions.
func (n *Node) NATSURL() string {
	if n.emb == nil {
		return ""
	}
	return n.emb.ClientURL()
}

// Gateway returns the node's gateway, or nil with Config.NoGateway.
func (n *Node) Gateway() *gateway.Server { return n.gw }

// BusStatus returns the state of the gateway's bus connection, or without
// a gateway the API client's (CONNECTED, RECONNECTING, …).
func (n *Node) BusStatus() string { return n.busConn().Status().String() }

// busConn is the connection whose state is the node's health.
func (n *Node) busConn() *nats.Conn {
	if n.gwNC != nil {
		return n.gwNC
	}
	return n.apiNC
}

// API returns the node's API client (nil with Config.NoAPI); it stays
// usable until Shutdown.
func (n *Node) API() *api.Client { return n.api }

// Worker returns the in-process worker, or nil without one.
func (n *Node) Worker() *worker.Worker { return n.w }

// Shutdown stops the node: the gateway first (no new clients, every
// connection closed after its queued data, close events handed to the
// workers), then the worker (events in hand finished), the HTTP server,
// the API client, the bus connections and the embedded NATS. ctx bounds
// the graceful part; when it expires the rest is stopped at once and the
// error wraps ctx.Err(). Shutdown is idempotent; concurrent calls wait for
// the first and return its result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		n.shutdownErr = n.shutdown(ctx)
		close(n.shutdownDone)
	})
	<-n.shutdownDone
	return n.shutdownErr
}

func (n *Node) shutdown(ctx context.Context) error {
	var errs []error
	if n.gw != nil {
		if err := n.gw.Shutdown(ctx); err != nil && !errors.Is(err, gateway.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("node: gateway shutdown: %w", err))
		}
	}
	if n.w != nil {
		if err := n.w.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: worker stop: %w", err))
		}
	}
	if n.hook != nil {
		if err := n.hook.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: webhook stop: %w", err))
		}
	}
	if n.httpSrv != nil {
		if err := n.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: http shutdown: %w", err))
			_ = n.httpSrv.Close()
		}
		<-n.httpDone
	}
	for _, a := range []*api.Client{n.api, n.wapi} {
		if a == nil {
			continue
		}
		if err := a.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: api close: %w", err))
		}
	}
	for _, c := range n.conns {
		_ = c.FlushTimeout(time.Second)
		c.Close()
	}
	if n.emb != nil {
		n.emb.Shutdown()
	}
	if len(errs) == 0 {
		n.log.Info("node stopped")
	}
	return errors.Join(errs...)
}

// dropMessage is a slog.Handler that drops the records whose message
// starts with prefix and passes the others to the wrapped handler.
type dropMessage struct {
	slog.Handler
	prefix string
}

// Handle implements slog.Handler.
func (d dropMessage) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, d.prefix) {
		return nil
	}
	return d.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (d dropMessage) WithAttrs(as []slog.Attr) slog.Handler {
	return dropMessage{d.Handler.WithAttrs(as), d.prefix}
}

// WithGroup implements slog.Handler.
func (d dropMessage) WithGroup(name string) slog.Handler {
	return dropMessage{d.Handler.WithGroup(name), d.prefix}
}
