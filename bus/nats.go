package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options says how to reach the bus. The zero value is not usable: set URL,
// or use an Embedded server's ConnectOptions.
type Options struct {
	// URL is a comma-separated list of NATS server URLs.
	URL string
	// User and Password authenticate with user/password; Token with a
	// token; NKeySeedFile with an NKey seed file; CredsFile with a NATS
	// credentials (JWT) file. Empty means not used.
	User, Password, Token, NKeySeedFile, CredsFile string
	// Name is the connection name shown by the NATS server.
	Name string
	// InProcess, when set, connects to this in-process server without a
	// socket (URL is then ignored).
	InProcess *server.Server
}

// Connect dials the bus. The connection reconnects forever on its own.
func Connect(o Options) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey seed: %w", err)
		}
		opts = append(opts, opt)
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	url := o.URL
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
		url = ""
	} else if url == "" {
		return nil, errors.New("bus: no NATS URL")
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w", displayURL(o), err)
	}
	return nc, nil
}

func displayURL(o Options) string {
	if o.InProcess != nil {
		return "in-process server"
	}
	return o.URL
}

// EmbeddedConfig configures an Embedded server.
type EmbeddedConfig struct {
	// Listen is the host:port to accept NATS clients on, for workers in
	// other processes. Empty means no listener: in-process connections only.
	Listen string
	// User and Password, when set, are required from every client. An
	// in-process connection made with ConnectOptions carries them.
	User, Password string
	// MaxPayload is the largest message the server accepts; 0 means 8 MiB.
	MaxPayload int32
}

// Embedded is a nats-server running inside this process.
type Embedded struct {
	srv *server.Server
	cfg EmbeddedConfig
}

// StartEmbedded starts an in-process nats-server and waits until it is ready.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 8 << 20
	}
	opts := &server.Options{
		ServerName:            "gatework-embedded",
		NoLog:                 true,
		NoSigs:                true,
		MaxPayload:            cfg.MaxPayload,
		MaxPending:            int64(cfg.MaxPayload) * 8,
		DontListen:            cfg.Listen == "",
		Username:              cfg.User,
		Password:              cfg.Password,
		WriteDeadline:         10 * time.Second,
		PingInterval:          10 * time.Second,
		MaxPingsOut:           3,
		DisableShortFirstPing: true,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: embedded listen %q: %w", cfg.Listen, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("bus: embedded server not ready within 10s")
	}
	return &Embedded{srv: srv, cfg: cfg}, nil
}

// Server returns the underlying nats-server.
func (e *Embedded) Server() *server.Server { return e.srv }

// ClientURL returns the URL other processes use, or "" without a listener.
func (e *Embedded) ClientURL() string {
	if e.cfg.Listen == "" {
		return ""
	}
	return e.srv.ClientURL()
}

// ConnectOptions returns Options for an in-process connection to e named name.
func (e *Embedded) ConnectOptions(name string) Options {
	return Options{InProcess: e.srv, User: e.cfg.User, Password: e.cfg.Password, Name: name}
}

// Shutdown stops the server and waits until it has stopped.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
