package cli_test

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/testpki"
)

// selfSigned writes a certificate for localhost and its key (issued by
// a throwaway CA) into a temporary directory and returns their paths.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	_, certFile, keyFile = testpki.Write(t, t.TempDir())
	return certFile, keyFile
}

// TestListenerTLS: a listener's tls keys load, are checked (the files
// too, at load time, naming the key) and print back.
func TestListenerTLS(t *testing.T) {
	cert, key := selfSigned(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	listener := func(tls string) string {
		return "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n    tls:\n" + tls
	}
	tests := []struct {
		name string
		yaml string
		want []string // problems; nil means valid
	}{
		{"valid", listener("      cert_file: " + cert + "\n      key_file: " + key + "\n      min_version: \"1.3\"\n      reload_interval: 2s\n"), nil},
		{"missing key_file", listener("      cert_file: " + cert + "\n"),
			[]string{"gatework.yaml:4: listeners[0].tls.key_file: required for tls"}},
		{"bad min_version", listener("      cert_file: " + cert + "\n      key_file: " + key + "\n      min_version: \"1.0\"\n"),
			[]string{`gatework.yaml:7: listeners[0].tls.min_version: "1.0" is not 1.2 or 1.3`}},
		{"unknown tls key", listener("      cert_file: " + cert + "\n      key_file: " + key + "\n      ca_file: x\n"),
			[]string{"gatework.yaml:7: listeners[0].tls.ca_file: unknown key (known here: cert_file, client_ca_file, key_file, min_version, reload_interval)"}},
		{"duration without unit", listener("      cert_file: " + cert + "\n      key_file: " + key + "\n      reload_interval: 5\n"),
			nil}, // checked below: refused with the line
		{"missing file", listener("      cert_file: " + missing + "\n      key_file: " + key + "\n"),
			[]string{"gatework.yaml:5: listeners[0].tls.cert_file: open " + missing + ": no such file or directory"}},
		{"key is not the certificate's", listener("      cert_file: " + key + "\n      key_file: " + key + "\n"),
			nil}, // checked below: names tls.cert_file
		{"client CA without certificates", listener("      cert_file: " + cert + "\n      key_file: " + key + "\n      client_ca_file: " + key + "\n"),
			[]string{"gatework.yaml:7: listeners[0].tls.client_ca_file: no PEM certificate found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.yaml, nil)
			switch tt.name {
			case "duration without unit":
				if err == nil || !strings.Contains(err.Error(), "gatework.yaml:7") {
					t.Fatalf("err = %v, want the line of reload_interval", err)
				}
				return
			case "key is not the certificate's":
				if err == nil || !strings.Contains(err.Error(), "listeners[0].tls.cert_file: with tls.key_file:") {
					t.Fatalf("err = %v, want one naming tls.cert_file", err)
				}
				return
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				want := &gateway.TLSConfig{CertFile: cert, KeyFile: key, MinVersion: "1.3", ReloadInterval: 2 * time.Second}
				if got := c.Listeners[0].TLS; got == nil || *got != *want {
					t.Fatalf("tls = %+v, want %+v", got, want)
				}
				out, err := c.Effective().YAML()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(out, []byte("reload_interval: 2s")) || bytes.Contains(out, []byte("client_ca_file")) {
					t.Errorf("printed:\n%s", out)
				}
				back, err := load(t, string(out), nil)
				if err != nil || *back.Listeners[0].TLS != *want {
					t.Fatalf("printed config does not load back: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
	// A plain listener prints no tls key at all.
	c, err := load(t, "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.Effective().YAML()
	if bytes.Contains(out, []byte("\n    tls:")) { // a listener's key (nats.tls is another)
		t.Errorf("plain listener printed with tls:\n%s", out)
	}
}
