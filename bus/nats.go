package bus

import (
	"errors"
	"fmt"
	"strings"
	"time"

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
	// CAFile is a PEM file of the certificate authorities that verify
	// the server's certificate (TLS); CertFile and KeyFile are this
	// client's certificate and key, for a server that asks for one. Empty
	// means the system roots, and no client certificate. A tls:// URL or
	// a server that requires TLS makes the connection use TLS.
	CAFile, CertFile, KeyFile string
	// Name is the connection name shown by the NATS server.
	Name string
	// InboxPrefix is the prefix of the connection's reply subjects
	// (nats.CustomInboxPrefix): Subjects.Inbox of the role the
	// credentials are for, the only inboxes that role may subscribe to
	// (see Permissions). Empty means nats.go's default, _INBOX, which
	// only a user with full access may subscribe to.
	InboxPrefix string
	// InProcess, when set, connects to this in-process server without a
	// socket (URL is then ignored).
	InProcess nats.InProcessConnProvider
	// Errors handles the connection's asynchronous errors (slow
	// consumers above all); nil means a new AsyncErrors logging to
	// slog.Default(). A user of the connection can count its own with
	// nats.Conn.ErrorHandler and SetErrorHandler, calling this one too.
	Errors *AsyncErrors
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
	errs := o.Errors
	if errs == nil {
		errs = NewAsyncErrors(nil)
	}
	opts = append(opts, nats.ErrorHandler(errs.Handle))
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
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" || o.KeyFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
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
	return RedactURL(o.URL)
}

// RedactURL returns the comma-separated NATS URLs s with the password
// of a user:password@ (or a token@) replaced by xxxxx, for logs and
// error messages.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		creds, host, ok := strings.Cut(rest, "@")
		if !ok {
			continue
		}
		if user, _, hasPass := strings.Cut(creds, ":"); hasPass {
			parts[i] = scheme + "://" + user + ":xxxxx@" + host
		} else { // a token
			parts[i] = scheme + "://xxxxx@" + host
		}
	}
	return strings.Join(parts, ",")
}
