// Package workerflag reads what a worker binary of its own (a main that
// calls worker.Run, like examples/echo and examples/chat) takes from its
// flags and environment: how to reach the bus, the subject prefix and the
// log settings, under the names the node's configuration uses. It is part
// of the command line (cli, the only code that reads flags and the
// environment, re-exports it as cli.WorkerFlags) but imports only bus and
// the standard library, so a worker binary built on it links the NATS
// client and not nats-server.
package workerflag

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/gatework/gatework/bus"
)

// DefaultWorkerURL is the NATS URL a worker binary dials when neither a
// flag nor GATEWORK_NATS_URL says otherwise: the node's embedded NATS
// started with `gatework start --nats-listen 127.0.0.1:4222`.
const DefaultWorkerURL = "nats://127.0.0.1:4222"

// Flags is what a worker binary of its own (examples/echo,
// examples/chat: a main that calls worker.Run) reads from its flags and
// the environment, since library packages read neither: how to reach the
// bus, the subject prefix and the log settings, under the names the
// node's configuration uses.
type Flags struct {
	// Bus says how to reach the bus; Name is left to the program.
	Bus bus.Options
	// Prefix is the cluster's subject prefix.
	Prefix string
	// Log is the log settings, from GATEWORK_LOG_LEVEL and
	// GATEWORK_LOG_FORMAT (no flags): give it to NewLogger.
	Log LogConfig
}

// LogConfig is the log settings: the node configuration's `log` section
// (cli.LogConfig), and a worker binary's GATEWORK_LOG_* variables.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// NewLogger returns the logger described by l, writing to w. An unknown
// level means info, an unknown format text (cli's Validate reports both).
func NewLogger(l LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(l.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Register registers on fs the flags a worker binary needs to reach the
// bus — -nats, -user, -password, -token, -nkey, -creds, -tls-ca,
// -tls-cert, -tls-key and -prefix, each defaulting to its GATEWORK_*
// environment variable (GATEWORK_NATS_URL, GATEWORK_NATS_USER, …,
// GATEWORK_PREFIX), the same names the node's configuration uses, and
// -inbox-prefix — and reads the log settings from the environment. The
// flag values land in f when fs is parsed. f.Bus.InboxPrefix is the
// worker's, Subjects.Inbox(bus.RoleWorker) under the prefix (the only
// inboxes a worker user may subscribe to), unless -inbox-prefix says
// otherwise. Secrets are better passed in the environment, since flags
// show in ps.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.Log = LogConfig{Level: os.Getenv("GATEWORK_LOG_LEVEL"), Format: os.Getenv("GATEWORK_LOG_FORMAT")}
	o, prefix := &f.Bus, &f.Prefix
	str := func(p *string, name, env, def, usage string) {
		if v := os.Getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	str(&o.URL, "nats", "GATEWORK_NATS_URL", DefaultWorkerURL, "NATS URL of the node")
	str(&o.User, "user", "GATEWORK_NATS_USER", "", "NATS user")
	str(&o.Password, "password", "GATEWORK_NATS_PASSWORD", "", "NATS password; a flag shows in ps: prefer the environment")
	str(&o.Token, "token", "GATEWORK_NATS_TOKEN", "", "NATS token; prefer the environment")
	str(&o.NKeySeedFile, "nkey", "GATEWORK_NATS_NKEY_SEED_FILE", "", "NATS NKey seed file")
	str(&o.CredsFile, "creds", "GATEWORK_NATS_CREDS_FILE", "", "NATS credentials file")
	str(&o.CAFile, "tls-ca", "GATEWORK_NATS_TLS_CA_FILE", "", "CA file that verifies the NATS server")
	str(&o.CertFile, "tls-cert", "GATEWORK_NATS_TLS_CERT_FILE", "", "client certificate file")
	str(&o.KeyFile, "tls-key", "GATEWORK_NATS_TLS_KEY_FILE", "", "client key file")
	inboxSet := false
	*prefix = bus.DefaultPrefix
	if v := os.Getenv("GATEWORK_PREFIX"); v != "" {
		*prefix = v
	}
	if !inboxSet {
		o.InboxPrefix = workerInbox(*prefix)
	}
	fs.Var(prefixValue{prefix: prefix, inbox: &o.InboxPrefix, inboxSet: &inboxSet}, "prefix",
		"bus subject prefix of the cluster (env GATEWORK_PREFIX)")
	fs.Var(inboxValue{inbox: &o.InboxPrefix, set: &inboxSet}, "inbox-prefix",
		"prefix of the reply subjects (default <prefix>.inbox.worker)")
}

// workerInbox is the worker's inbox prefix under prefix, or "" for an
// invalid prefix (NewSubjects reports it where it is used).
func workerInbox(prefix string) string {
	s, err := bus.NewSubjects(prefix)
	if err != nil {
		return ""
	}
	return s.Inbox(bus.RoleWorker)
}

// prefixValue is the -prefix flag: it also sets the inbox prefix, unless
// -inbox-prefix or its variable says otherwise.
type prefixValue struct {
	prefix, inbox *string
	inboxSet      *bool
}

func (v prefixValue) String() string {
	if v.prefix == nil {
		return ""
	}
	return *v.prefix
}

func (v prefixValue) Set(s string) error {
	if _, err := bus.NewSubjects(s); err != nil {
		return err
	}
	*v.prefix = s
	if !*v.inboxSet {
		*v.inbox = workerInbox(s)
	}
	return nil
}

// inboxValue is the -inbox-prefix flag.
type inboxValue struct {
	inbox *string
	set   *bool
}

func (v inboxValue) String() string {
	if v.inbox == nil {
		return ""
	}
	return *v.inbox
}

func (v inboxValue) Set(s string) error {
	*v.inbox, *v.set = s, true
	return nil
}
