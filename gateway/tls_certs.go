package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// certStore holds a TLS listener's current certificate (and client CAs)
// and loads them again when their files change. Handshakes read the
// current set without locks; only the tlsLayer's goroutine reloads.
type certStore struct {
	listener string
	cfg      TLSConfig
	alpn     []string
	log      *slog.Logger

	// base is the configuration every connection starts from: it picks
	// the current set when the client's hello arrives.
	base *tls.Config
	cur  atomic.Pointer[tls.Config]
	// seen is the state of the files when they were last loaded or tried;
	// owned by the reloading goroutine.
	seen [3]fileStamp
}

// fileStamp tells whether a file changed: its modification time and size,
// or the error that stat gave.
type fileStamp struct {
	mod  time.Time
	size int64
	err  string
}

// newCertStore loads the files once; an error here fails the listener's
// start.
func newCertStore(listener string, cfg TLSConfig, alpn []string, log *slog.Logger) (*certStore, error) {
	cs := &certStore{listener: listener, cfg: cfg, alpn: alpn, log: log}
	cs.seen = cs.stamps()
	tc, err := cs.load()
	if err != nil {
		return nil, err
	}
	cs.cur.Store(tc)
	cs.base = &tls.Config{
		GetConfigForClient: cs.configFor,
	}
	return cs, nil
}

// configFor returns the configuration of a client's handshake: the
// current set, with a key log that hands the traffic secrets to the
// socket's record layer (tls13.go) when the client offers TLS 1.3.
func (cs *certStore) configFor(hi *tls.ClientHelloInfo) (*tls.Config, error) {
	tc := cs.cur.Load()
	ts, ok := hi.Conn.(*tlsSock)
	if !ok || !slices.Contains(hi.SupportedVersions, tls.VersionTLS13) {
		return tc, nil
	}
	tc = tc.Clone()
	ts.kc = &keyCapture{}
	tc.KeyLogWriter = ts.kc
	return tc, nil
}

// files lists the files of the set; the client CA file may be "".
func (cs *certStore) files() [3]string {
	return [3]string{cs.cfg.CertFile, cs.cfg.KeyFile, cs.cfg.ClientCAFile}
}

// stamps stats the files.
func (cs *certStore) stamps() [3]fileStamp {
	var st [3]fileStamp
	for i, name := range cs.files() {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			st[i].err = err.Error()
			continue
		}
		st[i].mod, st[i].size = fi.ModTime(), fi.Size()
	}
	return st
}

// check loads the files again if they changed since the last attempt. A
// set that does not load is logged once and the current one stays.
func (cs *certStore) check() {
	st := cs.stamps()
	if st == cs.seen {
		return
	}
	cs.seen = st
	tc, err := cs.load()
	if err != nil {
		cs.log.Error("tls certificate not reloaded; keeping the previous one",
			"listener", cs.listener, "err", err)
		return
	}
	cs.cur.Store(tc)
	leaf := tc.Certificates[0].Leaf
	cs.log.Info("tls certificate reloaded", "listener", cs.listener,
		"subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
}

// load reads and checks the files and returns the TLS configuration for
// new connections.
func (cs *certStore) load() (*tls.Config, error) {
	certPEM, err := os.ReadFile(cs.cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(cs.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file: with tls.key_file: %w", err)
	}
	if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
		return nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tlsVersions[cs.cfg.MinVersion],
		CipherSuites: tls12Suites,
		NextProtos:   cs.alpn,
	}
	if cs.cfg.ClientCAFile != "" {
		caPEM, err := os.ReadFile(cs.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("tls.client_ca_file: %w", errNoPEMCerts)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// errNoPEMCerts is a CA file without a PEM certificate.
var errNoPEMCerts = errors.New("no PEM certificate found")
