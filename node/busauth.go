package node

import (
	"errors"
	"net/url"
	"strings"

	"github.com/gatework/gatework/bus"
)

// ErrNoBusCredentials is returned by Start for an external NATS (URL set)
// without credentials when InsecureNoAuth is not set: a bus anyone can
// join lets anyone send commands to the clients and read their events.
var ErrNoBusCredentials = errors.New("node: an external NATS needs credentials: " +
	"nats.user and nats.password, nats.token, nats.nkey_seed_file or nats.creds_file " +
	"(or nats.insecure_no_auth: true to connect without)")

// TLSFiles names the PEM files of TLS to the bus. Empty fields are not
// used.
type TLSFiles struct {
	// CAFile holds the certificate authorities that verify the server:
	// the external NATS, or the embedded server's listener for workers of
	// other processes (see Node.WorkerOptions). Empty means the system
	// roots.
	CAFile string
	// CertFile and KeyFile: with an external NATS, this node's client
	// certificate, for a server that asks for one; with the embedded
	// server, the certificate of its listener (Listen), which then
	// accepts TLS clients only. Both or neither.
	CertFile, KeyFile string
}

// HasCredentials reports whether c authenticates to an external NATS:
// a user, a token, an NKey seed, a creds file, or credentials in every URL.
func (c NATSConfig) HasCredentials() bool {
	if c.User != "" || c.Token != "" || c.NKeySeedFile != "" || c.CredsFile != "" {
		return true
	}
	for u := range strings.SplitSeq(c.URL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.User == nil || pu.User.Username() == "" {
			return false
		}
	}
	return true
}

// checkExternal refuses an external NATS without credentials unless
// InsecureNoAuth says so, and logs which bus is used.
func (n *Node) checkExternal() error {
	nc := n.cfg.NATS
	if !nc.HasCredentials() {
		if !nc.InsecureNoAuth {
			return ErrNoBusCredentials
		}
		n.log.Warn("bus: connecting to the external NATS without credentials (nats.insecure_no_auth)",
			"url", bus.RedactURL(nc.URL))
	}
	n.log.Info("bus: external NATS", "url", bus.RedactURL(nc.URL), "tls_ca", nc.TLS.CAFile != "",
		"tls_client_cert", nc.TLS.CertFile != "")
	return nil
}

// busOptions returns the options of the node's own connection named name:
// in-process with full access to the embedded server, or the configured
// credentials and TLS files for an external NATS.
func (n *Node) busOptions(name string) bus.Options {
	if n.emb != nil {
		return n.emb.ConnectOptions(name)
	}
	return n.externalOptions(name)
}

// externalOptions returns the options of a connection to the external
// NATS named name: the configured credentials and TLS files, and the inbox
// prefix of the role they are for (Role).
func (n *Node) externalOptions(name string) bus.Options {
	nc := n.cfg.NATS
	return bus.Options{
		URL: nc.URL, User: nc.User, Password: nc.Password, Token: nc.Token,
		NKeySeedFile: nc.NKeySeedFile, CredsFile: nc.CredsFile,
		CAFile: nc.TLS.CAFile, CertFile: nc.TLS.CertFile, KeyFile: nc.TLS.KeyFile,
		Name: name, InboxPrefix: n.subj.Inbox(n.role()),
	}
}

// role is the role of the node's credentials on an external NATS (see
// NATSConfig.Role).
func (n *Node) role() bus.Role {
	switch {
	case n.cfg.NATS.Role != "":
		return n.cfg.NATS.Role
	case n.cfg.NoGateway:
		return bus.RoleAPI
	}
	return bus.RoleNode
}

// WorkerOptions returns the options with which a worker in another
// process, named name, joins this node's bus: for the embedded server,
// NATSURL with the generated worker credentials (natsembed.WorkerUser: what
// bus.Permissions gives bus.RoleWorker), its inbox prefix and TLS.CAFile;
// for an external NATS, the node's own URL, credentials, inbox prefix
// and TLS files. URL is "" for an
// embedded server without Listen. The options hold secrets: never log
// them; hand them to another process through its environment or a file
// only its user can read, never its command line.
func (n *Node) WorkerOptions(name string) bus.Options {
	if n.emb == nil {
		return n.externalOptions(name)
	}
	o := n.emb.WorkerOptions(name)
	if n.cfg.NATS.TLS.CertFile != "" {
		o.CAFile = n.cfg.NATS.TLS.CAFile
	}
	return o
}

// GatewayOptions returns the bus options with which a gateway in another
// process (a gateway process of the master) joins this node's bus: with
// the embedded NATS, its generated gateway user (bus.RoleGateway's
// permissions); with an external NATS, the node's own credentials. name
// names the connection. They hold a secret: never log them.
func (n *Node) GatewayOptions(name string) bus.Options {
	if n.emb == nil {
		o := n.externalOptions(name)
		return o
	}
	o := n.emb.GatewayOptions(name)
	if n.cfg.NATS.TLS.CertFile != "" {
		o.CAFile = n.cfg.NATS.TLS.CAFile
	}
	return o
}
