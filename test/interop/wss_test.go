package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
)

// TestBrowserWSS runs Chromium's own WebSocket over TLS (wss://) against a
// node whose listener has a certificate made for the test: connect, text,
// 100 KB and binary echo, close 1000. Chromium is told to accept that
// certificate's key (--ignore-certificate-errors-spki-list), nothing else.
func TestBrowserWSS(t *testing.T) {
	requireNode(t, "puppeteer-core")
	require(t, fileExists(chromiumPath()), "chromium ("+chromiumPath()+")")
	tc, spki := serverCert(t)
	h := testApp()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, node.Config{
		Logger: testLogger(t),
		Gateway: gateway.Config{Listeners: []gateway.ListenerConfig{{
			Name: "wss", Protocol: "ws", Addr: "127.0.0.1:0", MaxMessage: maxMessage * 4, TLS: tc,
		}}},
		Worker: node.WorkerConfig{Handlers: &h, App: "interop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("node shutdown: %v", err)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>wss</title>"))
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	res := runScript(t, "wss.mjs", []string{
		"PAGE_URL=" + srv.URL + "/",
		"WSS_URL=wss://" + n.Addr("wss").String() + "/",
		"SPKI=" + spki,
		"CHROMIUM=" + chromiumPath(),
		"PROFILE=" + t.TempDir(),
	}, func() error { return nil })
	t.Logf("client: %s", res.Client)
	assertChecks(t, res, []string{
		"connect over wss",
		"echo text byte-exact",
		"echo 100 KB text",
		"echo binary",
		"client close 1000",
	})
}

// serverCert writes a self-signed certificate for 127.0.0.1 and returns
// the listener's TLS configuration and the base64 SHA-256 of its public
// key.
func serverCert(t *testing.T) (*gateway.TLSConfig, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	spkiDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tc := &gateway.TLSConfig{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(tc.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spkiDER)
	return tc, base64.StdEncoding.EncodeToString(sum[:])
}
