package cli_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli"
)

// TestNATSAuthConfig: an external NATS needs credentials or the explicit
// opt-out; the TLS keys come in consistent sets.
func TestNATSAuthConfig(t *testing.T) {
	const ext = "nats:\n  url: nats://10.0.0.5:4222\n"
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // problems; nil means valid
	}{
		{name: "external without credentials", yaml: ext,
			want: []string{"gatework.yaml:2: nats.url: an external NATS needs credentials: set nats.user and nats.password, nats.token, nats.nkey_seed_file or nats.creds_file (or nats.insecure_no_auth: true to connect without)"}},
		{name: "external, credentials in the environment", yaml: ext, env: []string{"GATEWORK_NATS_USER=gw", "GATEWORK_NATS_PASSWORD=pw"}},
		{name: "external, token", yaml: ext + "  token: t\n"},
		{name: "external, nkey", yaml: ext + "  nkey_seed_file: /etc/gw.nk\n"},
		{name: "external, creds file", yaml: ext + "  creds_file: /etc/gw.creds\n"},
		{name: "external, credentials in the URL", yaml: "nats:\n  url: nats://gw:pw@10.0.0.5:4222\n"},
		{name: "external, one URL without credentials", yaml: "nats:\n  url: nats://gw:pw@10.0.0.5:4222,nats://10.0.0.6:4222\n",
			want: []string{"gatework.yaml:2: nats.url: an external NATS needs credentials: set nats.user and nats.password, nats.token, nats.nkey_seed_file or nats.creds_file (or nats.insecure_no_auth: true to connect without)"}},
		{name: "external, explicit opt-out", yaml: ext + "  insecure_no_auth: true\n"},
		{name: "external, opt-out from the environment", yaml: ext, env: []string{"GATEWORK_NATS_INSECURE_NO_AUTH=true"}},
		{name: "embedded, opt-out", yaml: "nats:\n  insecure_no_auth: true\n",
			want: []string{"gatework.yaml:2: nats.insecure_no_auth: only for an external NATS (nats.url): the embedded NATS always requires credentials"}},
		{name: "embedded, reserved user", yaml: "nats:\n  user: gatework-worker\n  password: x\n",
			want: []string{`gatework.yaml:2: nats.user: "gatework-worker" is the name of a user the embedded NATS generates: choose another`}},
		{name: "embedded, user with a role", yaml: "nats:\n  user: remote\n  password: x\n  user_role: worker\n"},
		{name: "embedded, unknown role", yaml: "nats:\n  user: remote\n  password: x\n  user_role: admin\n",
			want: []string{`gatework.yaml:4: nats.user_role: "admin" is not a role: gateway, worker, api, node or empty (full access)`}},
		{name: "embedded, role without user", yaml: "nats:\n  user_role: worker\n",
			want: []string{"gatework.yaml:2: nats.user_role: set without nats.user"}},
		{name: "external, role", yaml: ext + "  token: t\n  user_role: worker\n",
			want: []string{"gatework.yaml:4: nats.user_role: only for the embedded NATS: an external NATS's operator sets the permissions (gatework config nats-users)"}},
		{name: "external, client certificate", yaml: ext + "  user: u\n  password: p\n  tls:\n    ca_file: /ca.pem\n    cert_file: /c.pem\n    key_file: /k.pem\n"},
		{name: "certificate without key", yaml: ext + "  token: t\n  tls:\n    cert_file: /c.pem\n",
			want: []string{"gatework.yaml:5: nats.tls.cert_file: set without nats.tls.key_file"}},
		{name: "key without certificate", yaml: ext + "  token: t\n  tls:\n    key_file: /k.pem\n",
			want: []string{"gatework.yaml:5: nats.tls.key_file: set without nats.tls.cert_file"}},
		{name: "embedded TLS with a listener", yaml: "nats:\n  listen: 127.0.0.1:4222\n  tls:\n    ca_file: /ca.pem\n    cert_file: /c.pem\n    key_file: /k.pem\n"},
		{name: "embedded TLS with worker processes", yaml: "worker:\n  processes: 2\nnats:\n  tls:\n    cert_file: /c.pem\n    key_file: /k.pem\n"},
		{name: "embedded TLS without a listener", yaml: "worker:\n  processes: 0\nnats:\n  tls:\n    cert_file: /c.pem\n    key_file: /k.pem\n",
			want: []string{"gatework.yaml:5: nats.tls.cert_file: the embedded NATS serves TLS on nats.listen only, which is not set (nor needed: no worker processes)"}},
		{name: "embedded CA without certificate", yaml: "nats:\n  tls:\n    ca_file: /ca.pem\n",
			want: []string{"gatework.yaml:3: nats.tls.ca_file: with the embedded NATS, the CA of nats.tls.cert_file for worker processes: set nats.tls.cert_file and key_file too"}},
		{name: "TLS from the environment", yaml: ext + "  token: t\n", env: []string{"GATEWORK_NATS_TLS_CERT_FILE=/c.pem"},
			want: []string{"env GATEWORK_NATS_TLS_CERT_FILE: nats.tls.cert_file: set without nats.tls.key_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml, tt.env)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// TestMaskedBusSecrets: `gatework config` shows no bus secret, not even a
// password inside nats.url.
func TestMaskedBusSecrets(t *testing.T) {
	c, err := load(t, "nats:\n  url: nats://gw:url-secret@10.0.0.5:4222,tls://tok-secret@10.0.0.6:4222\n  user: gw\n  password: pw-secret\n  token: token-secret\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Effective().Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"url-secret", "tok-secret", "pw-secret", "token-secret"} {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("%s shown:\n%s", s, out)
		}
	}
	if !bytes.Contains(out, []byte("nats://gw:xxxxx@10.0.0.5:4222")) {
		t.Errorf("URL not shown redacted:\n%s", out)
	}
	if c.NATS.Password != "pw-secret" {
		t.Error("Masked changed the original")
	}
}

// TestNewLogger: log.format json writes one JSON object a line with the
// level and message; log.level filters.
func TestNewLogger(t *testing.T) {
	tests := []struct {
		level, format string
		want          []string // messages that pass, of debug, info, warn, error
	}{
		{"debug", "json", []string{"d", "i", "w", "e"}},
		{"info", "json", []string{"i", "w", "e"}},
		{"warn", "json", []string{"w", "e"}},
		{"error", "json", []string{"e"}},
		{"WARN", "text", []string{"w", "e"}},
		{"info", "text", []string{"i", "w", "e"}},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		log := cli.NewLogger(cli.LogConfig{Level: tt.level, Format: tt.format}, &b)
		log.Debug("d", "k", 1)
		log.Info("i", "k", 1)
		log.Warn("w", "k", 1)
		log.Error("e", "k", 1)
		var got []string
		for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
			if tt.format == "json" {
				var rec struct {
					Level, Msg string
					K          int
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.K != 1 || rec.Level == "" {
					t.Fatalf("%s/%s: line %q is not a JSON record: %v", tt.level, tt.format, line, err)
				}
				got = append(got, rec.Msg)
				continue
			}
			if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " k=1") {
				t.Fatalf("%s/%s: line %q is not key=value", tt.level, tt.format, line)
			}
			_, msg, _ := strings.Cut(line, " msg=")
			msg, _, _ = strings.Cut(msg, " ")
			got = append(got, msg)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("level %s format %s: got %v, want %v", tt.level, tt.format, got, tt.want)
		}
	}
}

// TestConfigNATSUsers: `gatework config nats-users` prints the
// least-privilege users of bus.AuthorizationConfig for the configured
// prefix.
func TestConfigNATSUsers(t *testing.T) {
	t.Setenv("GATEWORK_PREFIX", "acme.gw")
	out, errOut, err := run(t, "config", "nats-users")
	if err != nil {
		t.Fatalf("%v: %s", err, errOut)
	}
	s, _ := bus.NewSubjects("acme.gw")
	if want := bus.AuthorizationConfig(s); out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if !strings.Contains(out, `"acme.gw.events acme.gw.workers"`) {
		t.Errorf("no queue permission for the prefix acme.gw:\n%s", out)
	}
}
