package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/node"
)

// NATSTLSConfig is the `nats.tls` section: TLS to the bus, PEM files.
// Empty means no TLS (a tls:// nats.url still verifies the server with the
// system roots).
type NATSTLSConfig struct {
	// CAFile verifies the server: the external NATS, or for worker
	// processes the embedded NATS's listener.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile: external NATS, the client certificate; the
	// embedded NATS, the certificate of its listener (TLS only then).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

func (t NATSTLSConfig) files() node.TLSFiles {
	return node.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
}

// natsAuth checks the keys of bus authentication and TLS.
func (v *validator) natsAuth() {
	n := v.c.NATS
	if n.URL != "" {
		nc := node.NATSConfig{URL: n.URL, User: n.User, Token: n.Token, NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile}
		if !nc.HasCredentials() && !n.InsecureNoAuth {
			v.bad("nats.url", "an external NATS needs credentials: set nats.user and nats.password, nats.token, "+
				"nats.nkey_seed_file or nats.creds_file (or nats.insecure_no_auth: true to connect without)")
		}
	} else {
		if n.InsecureNoAuth {
			v.bad("nats.insecure_no_auth", "only for an external NATS (nats.url): the embedded NATS always requires credentials")
		}
		if n.User == natsembed.NodeUser || n.User == natsembed.WorkerUser {
			v.bad("nats.user", "%q is the name of a user the embedded NATS generates: choose another", n.User)
		}
		switch {
		case n.UserRole == "":
		case !slices.Contains(bus.Roles, bus.Role(n.UserRole)):
			v.bad("nats.user_role", "%q is not a role: gateway, worker, api, node or empty (full access)", n.UserRole)
		case n.User == "":
			v.bad("nats.user_role", "set without nats.user")
		}
	}
	if n.URL != "" && n.UserRole != "" {
		v.bad("nats.user_role", "only for the embedded NATS: an external NATS's operator sets the permissions (gatework config nats-users)")
	}
	t := n.TLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.bad("nats.tls.cert_file", "set without nats.tls.key_file")
	case t.CertFile == "" && t.KeyFile != "":
		v.bad("nats.tls.key_file", "set without nats.tls.cert_file")
	case n.URL == "" && t.CertFile != "" && n.Listen == "" && !v.c.workerProcesses():
		v.bad("nats.tls.cert_file", "the embedded NATS serves TLS on nats.listen only, which is not set (nor needed: no worker processes)")
	case n.URL == "" && t.CAFile != "" && t.CertFile == "":
		v.bad("nats.tls.ca_file", "with the embedded NATS, the CA of nats.tls.cert_file for worker processes: set nats.tls.cert_file and key_file too")
	}
}

// workerProcesses reports whether the master runs worker processes.
func (c Config) workerProcesses() bool {
	return c.Worker.Processes > 0 && c.Worker.App != appNone
}

// busEnvFile returns the file where the master writes the bus of workers
// started by hand: the pid file's path with .nats.env for .pid.
func busEnvFile(pidFile string) string {
	return strings.TrimSuffix(pidFile, ".pid") + ".nats.env"
}

// writeBusEnv writes o, a worker's bus options, and prefix to path as
// shell variable assignments that examples/echo, examples/chat and
// workers built on them read (GATEWORK_NATS_URL, _USER, _PASSWORD,
// _TLS_CA_FILE, GATEWORK_PREFIX). The worker user's inbox prefix is not
// among them: it is GATEWORK_PREFIX followed by ".inbox.worker"
// (bus.Subjects.Inbox), and every name here must stay a configuration
// key (the configuration refuses unknown GATEWORK_ variables). The file is created with mode 0600 and
// renamed over path, so that neither another user nor a symbolic link
// planted at path sees the password.
func writeBusEnv(path string, o bus.Options, prefix string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# gatework (pid %d): the embedded NATS for workers started by hand. Removed at exit.\n", os.Getpid())
	b.WriteString("#   set -a; . " + shellQuote(path) + "; set +a; go run ./examples/echo\n")
	for _, kv := range [][2]string{
		{"GATEWORK_NATS_URL", o.URL}, {"GATEWORK_NATS_USER", o.User}, {"GATEWORK_NATS_PASSWORD", o.Password},
		{"GATEWORK_NATS_TLS_CA_FILE", o.CAFile}, {"GATEWORK_PREFIX", prefix},
	} {
		if kv[1] != "" {
			b.WriteString(kv[0] + "=" + shellQuote(kv[1]) + "\n")
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".gatework-nats-*.env")
	if err != nil {
		return fmt.Errorf("bus env file: %w", err)
	}
	tmp := f.Name()
	_, werr := f.WriteString(b.String())
	cerr := f.Close()
	if err := firstErr(werr, cerr, os.Chmod(tmp, 0o600)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("bus env file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("bus env file: %w", err)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeWorkerBus writes the bus of workers started by hand beside
// pidFile (see writeBusEnv) when the embedded NATS listens, and returns the
// file's path, or "" when there is none. A failure is logged: the node
// runs on, only hand-started workers lack the credentials.
func (m *masterRun) writeWorkerBus(pidFile string) string {
	if m.node.NATSURL() == "" {
		return ""
	}
	path := busEnvFile(pidFile)
	if err := writeBusEnv(path, m.node.WorkerOptions(""), m.cfg.Prefix); err != nil {
		m.log.Warn("no bus file for workers started by hand", "err", err)
		return ""
	}
	m.log.Info("bus: credentials for workers started by hand written (mode 0600)", "file", path)
	return path
}

// busCreds is the bus a master hands to its child processes (gateway
// processes: gatewaySpec; worker processes: childSpec), embedded in both
// so that its fields keep their JSON names at the top level of the
// handoff. Empty fields are not used (see bus.Options).
type busCreds struct {
	URL          string `json:"url"`
	User         string `json:"user,omitempty"`
	Password     string `json:"password,omitempty"`
	Token        string `json:"token,omitempty"`
	NKeySeedFile string `json:"nkey_seed_file,omitempty"`
	CredsFile    string `json:"creds_file,omitempty"`
	CAFile       string `json:"ca_file,omitempty"`
	CertFile     string `json:"cert_file,omitempty"`
	KeyFile      string `json:"key_file,omitempty"`
}

// credsOf returns the bus of o (its URL and credentials).
func credsOf(o bus.Options) busCreds {
	return busCreds{
		URL: o.URL, User: o.User, Password: o.Password, Token: o.Token,
		NKeySeedFile: o.NKeySeedFile, CredsFile: o.CredsFile,
		CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile,
	}
}

// credsOfConfig returns the bus of the nats section n.
func credsOfConfig(n NATSConfig) busCreds {
	return busCreds{
		URL: n.URL, User: n.User, Password: n.Password, Token: n.Token,
		NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile,
		CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile,
	}
}

// options returns b as bus options (the rest of o left as it is).
func (b busCreds) options(o bus.Options) bus.Options {
	o.URL, o.User, o.Password, o.Token = b.URL, b.User, b.Password, b.Token
	o.NKeySeedFile, o.CredsFile = b.NKeySeedFile, b.CredsFile
	o.CAFile, o.CertFile, o.KeyFile = b.CAFile, b.CertFile, b.KeyFile
	return o
}

// natsConfig returns b as a node's external bus.
func (b busCreds) natsConfig() node.NATSConfig {
	return node.NATSConfig{
		URL: b.URL, User: b.User, Password: b.Password, Token: b.Token,
		NKeySeedFile: b.NKeySeedFile, CredsFile: b.CredsFile,
		TLS: node.TLSFiles{CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile},
	}
}
