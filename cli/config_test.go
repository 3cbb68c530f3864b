package cli_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/cli"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/framing"
)

var apps = []cli.App{
	{Name: "echo", Handlers: echo.Handlers()},
	{Name: "chat", Handlers: chat.Handlers()},
}

var appNames = []string{"echo", "chat"}

// writeFile writes content to a file named name in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// load loads content as gatework.yaml with environ, then validates.
func load(t *testing.T, content string, environ []string) (cli.Config, error) {
	t.Helper()
	path := ""
	if content != "" {
		path = writeFile(t, "gatework.yaml", content)
	}
	c, err := cli.Load(cli.DefaultConfig("echo"), path, environ)
	// As the command does: validate what could be loaded too, and report
	// every problem.
	var all cli.ConfigError
	for _, e := range []error{err, c.Validate(appNames)} {
		var ce *cli.ConfigError
		if errors.As(e, &ce) {
			all.Problems = append(all.Problems, ce.Problems...)
		} else if e != nil {
			t.Fatalf("error %v (%T) is not a *cli.ConfigError", e, e)
		}
	}
	if len(all.Problems) > 0 {
		return c, &all
	}
	return c, nil
}

// problems returns the lines of a *cli.ConfigError, the file's directory
// cut off.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var ce *cli.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *cli.ConfigError", err, err)
	}
	var out []string
	for _, p := range ce.Problems {
		out = append(out, strings.TrimPrefix(p.Error(), filepath.Dir(p.Where)+string(filepath.Separator)))
	}
	return out
}

func TestLoadYAML(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		want  []string // problems, exactly, in order; nil means valid
		check func(t *testing.T, c cli.Config)
	}{
		{name: "empty file", yaml: "\n", check: func(t *testing.T, c cli.Config) {
			if c.HTTP.Addr != cli.DefaultHTTPAddr || len(c.Listeners) != 2 {
				t.Errorf("defaults lost: %+v", c)
			}
		}},
		{name: "overrides", yaml: "http:\n  addr: 127.0.0.1:9000\ngateway:\n  event_timeout: 1500ms\nworker:\n  app: chat\n",
			check: func(t *testing.T, c cli.Config) {
				if c.HTTP.Addr != "127.0.0.1:9000" || c.Gateway.EventTimeout != cli.Duration(1500*time.Millisecond) || c.Worker.App != "chat" {
					t.Errorf("got %+v", c)
				}
				if c.Gateway.MaxBatch != 64 || c.Log.Level != "info" {
					t.Error("keys not in the file lost their defaults")
				}
			}},
		{name: "listeners replace the defaults", yaml: "listeners:\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    framing: {kind: length, length_size: 2, byte_order: little}\n",
			check: func(t *testing.T, c cli.Config) {
				want := []gateway.ListenerConfig{{Protocol: "tcp", Addr: "127.0.0.1:0",
					Framing: framing.Config{Kind: "length", LengthSize: 2, ByteOrder: "little"}}}
				if !reflect.DeepEqual(c.Listeners, want) {
					t.Errorf("listeners %+v", c.Listeners)
				}
			}},
		{name: "heartbeat and queue policy", yaml: "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n    ping_interval: 10s\n    idle_timeout: -1s\n    queue_policy: drop_oldest\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    ping_data: ping\n    idle_timeout: 1m\n",
			check: func(t *testing.T, c cli.Config) {
				ws, tcp := c.Listeners[0], c.Listeners[1]
				if ws.PingInterval != 10*time.Second || ws.IdleTimeout != -time.Second || ws.QueuePolicy != gateway.QueueDropOldest ||
					tcp.PingData != "ping" || tcp.IdleTimeout != time.Minute {
					t.Errorf("listeners %+v", c.Listeners)
				}
			}},
		{name: "bad heartbeat and queue policy", yaml: "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n    ping_interval: 25\n  - protocol: ws\n    name: b\n    addr: 127.0.0.1:0\n    queue_policy: drop\n",
			want: []string{
				"gatework.yaml:4: listeners[0].ping_interval: cannot unmarshal !!int `25` into time.Duration",
				`gatework.yaml:8: listeners[1].queue_policy: "drop" is not disconnect, drop_oldest or drop_newest`,
			}},
		{name: "webhook", yaml: "worker:\n  webhook:\n    url: http://127.0.0.1:8080/events\n    secret: s\n    timeout: 2s\n    max_in_flight: 8\n    retries: 3\n",
			check: func(t *testing.T, c cli.Config) {
				w := c.Worker.Webhook
				if w.URL != "http://127.0.0.1:8080/events" || w.Secret != "s" || w.Timeout != cli.Duration(2*time.Second) || w.MaxInFlight != 8 || w.Retries != 3 {
					t.Errorf("webhook %+v", w)
				}
				nc, err := c.NodeConfig(nil)
				if err != nil || nc.Webhook.URL != w.URL || nc.Webhook.MaxInFlight != 8 || nc.Worker.Handlers != nil {
					t.Errorf("node config webhook %+v handlers %v: %v", nc.Webhook, nc.Worker.Handlers, err)
				}
			}},
		{name: "webhook without secret or scheme", yaml: "worker:\n  webhook:\n    url: 127.0.0.1:8080\n",
			want: []string{
				"gatework.yaml:2: worker.webhook.secret: required with worker.webhook.url: the backend checks the signature with it (GATEWORK_WORKER_WEBHOOK_SECRET)",
				`gatework.yaml:3: worker.webhook.url: "127.0.0.1:8080" is not an http:// or https:// URL with a host`,
			}},
		{name: "unknown top-level key", yaml: "prefix: gw\nhttps:\n  addr: x\n",
			want: []string{"gatework.yaml:2: https: unknown key (did you mean http?)"}},
		{name: "unknown nested key", yaml: "http:\n  adr: 127.0.0.1:1\n",
			want: []string{"gatework.yaml:2: http.adr: unknown key (did you mean http.addr?)"}},
		{name: "api token hint", yaml: "api:\n  token: x\n",
			want: []string{"gatework.yaml:2: api.token: unknown key (the API token is http.token)"}},
		{name: "unknown listener key", yaml: "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n    colour: blue\n",
			want: []string{"gatework.yaml:4: listeners[0].colour: unknown key (known here: addr, codec, compression, confirm_timeout, decode_error, delay_receive, framing, idle_timeout, max_message, max_peers, max_queue_bytes, message_type, name, origins, path, ping_data, ping_interval, protocol, queue_policy, rate_limit, tcp_keepalive, tls, upgrade_hook, upgrade_max_pending, upgrade_timeout)"}},
		{name: "unknown framing key", yaml: "listeners:\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    framing:\n      kind: length\n      lenght_size: 2\n",
			want: []string{"gatework.yaml:6: listeners[0].framing.lenght_size: unknown key (did you mean listeners[0].framing.length_size?)"}},
		{name: "bad framing option", yaml: "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    framing:\n      kind: length\n      length_size: 3\n",
			want: []string{"gatework.yaml:8: listeners[1].framing.length_size: must be 1, 2 or 4, got 3"}},
		{name: "option of another kind", yaml: "listeners:\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    framing: {kind: line, byte_order: big}\n",
			want: []string{`gatework.yaml:4: listeners[0].framing.byte_order: only valid with kind length, kind is "line"`}},
		{name: "option of another protocol", yaml: "listeners:\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    path: /ws\n  - protocol: ws\n    addr: 127.0.0.1:0\n    framing: {kind: line}\n",
			want: []string{
				"gatework.yaml:4: listeners[0].path: only for ws listeners",
				"gatework.yaml:7: listeners[1].framing: only for tcp listeners",
			}},
		{name: "bad protocol and address", yaml: "listeners:\n  - protocol: udp5\n    addr: 127.0.0.1:0\n  - protocol: ws\n    addr: 127.0.0.1:70000\n  - protocol: ws\n    addr: nohost\n",
			want: []string{
				`gatework.yaml:2: listeners[0].protocol: unknown protocol "udp5" (ws, tcp or udp)`,
				`gatework.yaml:5: listeners[1].addr: "127.0.0.1:70000": port "70000" is not a number from 0 to 65535`,
				`gatework.yaml:7: listeners[2].addr: "nohost" is not host:port: address nohost: missing port in address`,
			}},
		{name: "duplicate names and addresses", yaml: "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:7000\n  - protocol: ws\n    addr: 127.0.0.1:7000\nhttp:\n  addr: 127.0.0.1:7000\n",
			want: []string{
				`gatework.yaml:4: listeners[1].name: "ws" is already the name of listeners[0]`,
				"gatework.yaml:5: listeners[1].addr: 127.0.0.1:7000 is already used by listeners[0].addr",
				"gatework.yaml:7: http.addr: 127.0.0.1:7000 is already used by listeners[0].addr",
			}},
		{name: "no listeners", yaml: "listeners: []\n",
			want: []string{"gatework.yaml:1: listeners: at least one listener is required"}},
		{name: "bad durations", yaml: "gateway:\n  event_timeout: 3\n  close_timeout: soon\n  heartbeat_interval: -1s\nshutdown_timeout: [1]\n",
			want: []string{
				`gatework.yaml:2: gateway.event_timeout: "3" is not a duration with a unit (such as 3s or 250ms)`,
				`gatework.yaml:3: gateway.close_timeout: "soon" is not a duration with a unit (such as 3s or 250ms)`,
				`gatework.yaml:5: shutdown_timeout: "" is not a duration with a unit (such as 3s or 250ms)`,
				"gatework.yaml:4: gateway.heartbeat_interval: must not be negative, got -1s",
			}},
		{name: "uid gate lease too short", yaml: "gateway:\n  dispatch: uid\n  uid_gate_lease: 50ms\n",
			want: []string{"gatework.yaml:3: gateway.uid_gate_lease: 50ms is below 100ms"}},
		{name: "wrong types", yaml: "gateway:\n  max_batch: lots\nworker:\n  concurrency: -3\nlog:\n  level: loud\n  format: xml\n",
			want: []string{
				"gatework.yaml:2: gateway.max_batch: cannot unmarshal !!str `lots` into int",
				"gatework.yaml:4: worker.concurrency: must not be negative, got -3",
				`gatework.yaml:6: log.level: "loud" is not debug, info, warn or error`,
				`gatework.yaml:7: log.format: "xml" is not text or json`,
			}},
		{name: "unknown app", yaml: "worker:\n  app: pong\n",
			want: []string{`gatework.yaml:2: worker.app: unknown app "pong": echo, chat or none`}},
		{name: "app none", yaml: "worker:\n  app: none\n"},
		{name: "task processes", yaml: "worker:\n  processes: 2\n  task_processes: 3\n  task_concurrency: 4\n  task_max_attempts: 3\n  task_max_payload: 1000\n",
			check: func(t *testing.T, c cli.Config) {
				if w := c.Worker; w.TaskProcesses != 3 || w.TaskConcurrency != 4 || w.TaskMaxAttempts != 3 || w.TaskMaxPayload != 1000 {
					t.Errorf("worker %+v", w)
				}
			}},
		{name: "worker gomaxprocs", yaml: "worker:\n  gomaxprocs: 2\n",
			check: func(t *testing.T, c cli.Config) {
				if c.Worker.GOMAXPROCS != 2 {
					t.Errorf("worker %+v", c.Worker)
				}
			}},
		{name: "worker heap floor default", yaml: "worker:\n  processes: 2\n",
			check: func(t *testing.T, c cli.Config) {
				if c.Worker.HeapFloor != cli.DefaultHeapFloor || cli.DefaultHeapFloor != 16<<20 {
					t.Errorf("worker.heap_floor %d, want %d", c.Worker.HeapFloor, 16<<20)
				}
			}},
		{name: "worker heap floor off", yaml: "worker:\n  heap_floor: 0\n",
			check: func(t *testing.T, c cli.Config) {
				if c.Worker.HeapFloor != 0 {
					t.Errorf("worker.heap_floor %d, want 0", c.Worker.HeapFloor)
				}
			}},
		{name: "negative worker heap floor", yaml: "worker:\n  heap_floor: -1\n",
			want: []string{"gatework.yaml:2: worker.heap_floor: must not be negative, got -1"}},
		{name: "negative worker gomaxprocs", yaml: "worker:\n  gomaxprocs: -1\n",
			want: []string{"gatework.yaml:2: worker.gomaxprocs: must not be negative, got -1"}},
		{name: "task processes without workers", yaml: "worker:\n  processes: 0\n  task_processes: 2\n  task_max_attempts: -1\n",
			want: []string{
				"gatework.yaml:3: worker.task_processes: needs worker processes running an app (worker.processes > 0, worker.app not none, no webhook)",
				"gatework.yaml:4: worker.task_max_attempts: must not be negative, got -1",
			}},
		{name: "nats inconsistent with url", yaml: "nats:\n  url: nats://127.0.0.1:4222\n  listen: 127.0.0.1:4333\n  password: x\n  token: t\n",
			want: []string{
				"gatework.yaml:3: nats.listen: only for the embedded NATS, but nats.url is set",
				"gatework.yaml:4: nats.password: set without nats.user",
			}},
		{name: "nats inconsistent embedded", yaml: "nats:\n  token: t\n  creds_file: /x.creds\n  user: u\n",
			want: []string{
				"gatework.yaml:2: nats.token: only for an external NATS (nats.url): the embedded NATS takes nats.user and nats.password",
				"gatework.yaml:3: nats.creds_file: only for an external NATS (nats.url): the embedded NATS takes nats.user and nats.password",
				"gatework.yaml:4: nats.user: set without nats.password: the embedded NATS needs both, or neither",
			}},
		{name: "open bus on the network", yaml: "nats:\n  listen: 0.0.0.0:4222\n",
			want: []string{`gatework.yaml:2: nats.listen: "0.0.0.0:4222" is reachable from other machines, whose workers cannot know the credentials generated at each start: set nats.user and nats.password`}},
		{name: "bad nats url", yaml: "nats:\n  url: http://x:1,nats://ok:4222\n  insecure_no_auth: true\n",
			want: []string{`gatework.yaml:2: nats.url: "http://x:1": scheme "http" is not nats, tls, ws or wss`}},
		{name: "message larger than the bus", yaml: "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n    max_message: 8388608\n",
			want: []string{"gatework.yaml:4: listeners[0].max_message: 8388608 bytes do not fit nats.max_payload 8388608 with 65536 bytes for the envelope: raise nats.max_payload"}},
		{name: "bad token", yaml: "http:\n  token: two words\n",
			want: []string{"gatework.yaml:2: http.token: contains white space or control characters"}},
		{name: "bad prefix", yaml: "prefix: a.*\n",
			want: []string{`gatework.yaml:1: prefix: invalid subject prefix "a.*"`}},
		{name: "yaml syntax", yaml: "http:\n  addr: [\n",
			want: []string{"gatework.yaml:2: did not find expected node content"}},
		{name: "two documents", yaml: "prefix: a\n---\nprefix: b\n",
			want: []string{"gatework.yaml: more than one YAML document: keep one"}},
		{name: "limits", yaml: "listeners:\n  - protocol: ws\n    addr: 127.0.0.1:0\n    origins: [\"https://example.com\", \"*.example.org\"]\n" +
			"    rate_limit: {messages: 20, per: 2s, burst: 40, policy: close}\n" +
			"gateway:\n  max_conns: 1000\n  max_conns_per_ip: 10\n  max_new_conns_per_sec: 200\n  ip_rate_limit: {messages: 100, policy: close_ip}\n",
			check: func(t *testing.T, c cli.Config) {
				l := c.Listeners[0]
				if l.RateLimit != (gateway.RateLimit{Messages: 20, Per: 2 * time.Second, Burst: 40, Policy: "close"}) ||
					!slices.Equal(l.Origins, []string{"https://example.com", "*.example.org"}) {
					t.Errorf("listener limits %+v", l)
				}
				g := c.Gateway
				if g.MaxConns != 1000 || g.MaxConnsPerIP != 10 || g.MaxNewConnsPerSec != 200 ||
					g.IPRateLimit != (cli.RateLimitConfig{Messages: 100, Per: cli.Duration(time.Second), Policy: "close_ip"}) {
					t.Errorf("gateway limits %+v", g)
				}
			}},
		{name: "bad limits", yaml: "listeners:\n  - protocol: tcp\n    addr: 127.0.0.1:0\n    origins: [\"*\"]\n" +
			"  - protocol: ws\n    addr: 127.0.0.1:1\n    rate_limit: {messages: 5, policy: ban}\n" +
			"  - protocol: ws\n    name: w2\n    addr: 127.0.0.1:2\n    origins: [\"https://a.b/path\"]\n" +
			"gateway:\n  max_conns: -1\n  ip_rate_limit:\n    per: 5\n    policy: kick\n",
			want: []string{
				`gatework.yaml:15: gateway.ip_rate_limit.per: "5" is not a duration with a unit (such as 3s or 250ms)`,
				"gatework.yaml:4: listeners[0].origins: only for ws listeners",
				`gatework.yaml:7: listeners[1].rate_limit.policy: "ban" is not drop, close, force_close, close_ip or force_close_ip`,
				"gatework.yaml:11: listeners[2].origins[0]: want scheme://host[:port] with no path, or *.domain",
				"gatework.yaml:13: gateway.max_conns: must not be negative, got -1",
				`gatework.yaml:16: gateway.ip_rate_limit.policy: "kick" is not drop, close, force_close, close_ip or force_close_ip`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.yaml, nil)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
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
}

func TestEnv(t *testing.T) {
	file := "http:\n  addr: 127.0.0.1:9000\nlog:\n  level: debug\n"
	tests := []struct {
		name  string
		env   []string
		want  []string
		check func(t *testing.T, c cli.Config)
	}{
		{name: "env over file", env: []string{"GATEWORK_HTTP_ADDR=127.0.0.1:9001", "PATH=/bin", "GATEWORK_GATEWAY_EVENT_TIMEOUT=2s", "GATEWORK_WORKER_CONCURRENCY=8"},
			check: func(t *testing.T, c cli.Config) {
				if c.HTTP.Addr != "127.0.0.1:9001" || c.Gateway.EventTimeout != cli.Duration(2*time.Second) || c.Worker.Concurrency != 8 {
					t.Errorf("got %+v", c)
				}
				if c.Log.Level != "debug" {
					t.Errorf("file value lost: log.level %q", c.Log.Level)
				}
			}},
		{name: "empty variable is unset", env: []string{"GATEWORK_HTTP_ADDR="},
			check: func(t *testing.T, c cli.Config) {
				if c.HTTP.Addr != "127.0.0.1:9000" {
					t.Errorf("http.addr %q", c.HTTP.Addr)
				}
			}},
		{name: "api token alias", env: []string{"GATEWORK_API_TOKEN=tok"},
			check: func(t *testing.T, c cli.Config) {
				if c.HTTP.Token != "tok" {
					t.Errorf("http.token %q", c.HTTP.Token)
				}
			}},
		{name: "both token variables agree", env: []string{"GATEWORK_API_TOKEN=tok", "GATEWORK_HTTP_TOKEN=tok"},
			check: func(t *testing.T, c cli.Config) {
				if c.HTTP.Token != "tok" {
					t.Errorf("http.token %q", c.HTTP.Token)
				}
			}},
		{name: "token variables disagree", env: []string{"GATEWORK_API_TOKEN=a", "GATEWORK_HTTP_TOKEN=b"},
			want: []string{"env GATEWORK_API_TOKEN: http.token: differs from GATEWORK_HTTP_TOKEN: set one of them"}},
		{name: "allowed variable", env: []string{"GATEWORK_CONFIG=/elsewhere.yaml"}},
		{name: "unknown variables", env: []string{"GATEWORK_HTTP_ADRR=x", "GATEWORK_COLOUR=blue"},
			want: []string{
				"env GATEWORK_COLOUR: unknown environment variable (docs/config.md lists the GATEWORK_ variables)",
				"env GATEWORK_HTTP_ADRR: unknown environment variable (did you mean GATEWORK_HTTP_ADDR?)",
			}},
		{name: "bad values", env: []string{"GATEWORK_GATEWAY_MAX_BATCH=many", "GATEWORK_NATS_MAX_PAYLOAD=99999999999", "GATEWORK_API_QUERY_TIMEOUT=2"},
			want: []string{
				`env GATEWORK_API_QUERY_TIMEOUT: api.query_timeout: "2" is not a duration with a unit (such as 3s or 250ms)`,
				`env GATEWORK_GATEWAY_MAX_BATCH: gateway.max_batch: "many" is not an integer of 64 bits`,
				`env GATEWORK_NATS_MAX_PAYLOAD: nats.max_payload: "99999999999" is not an integer of 32 bits`,
			}},
		{name: "validation names the variable", env: []string{"GATEWORK_LOG_FORMAT=xml", "GATEWORK_NATS_LISTEN=127.0.0.1:4222", "GATEWORK_NATS_URL=nats://127.0.0.1:4222", "GATEWORK_NATS_TOKEN=t"},
			want: []string{
				"env GATEWORK_NATS_LISTEN: nats.listen: only for the embedded NATS, but nats.url is set",
				`env GATEWORK_LOG_FORMAT: log.format: "xml" is not text or json`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, file, tt.env)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// TestExampleFile checks that gatework.example.yaml is valid and holds
// the defaults.
func TestExampleFile(t *testing.T) {
	c, err := cli.Load(cli.DefaultConfig("echo"), "../gatework.example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(appNames); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Effective().YAML()
	want, _ := cli.DefaultConfig("echo").Effective().YAML()
	if !bytes.Equal(got, want) {
		t.Errorf("gatework.example.yaml differs from the defaults:\n%s\nwant:\n%s", got, want)
	}
}

// TestProductionExampleFile checks that gatework.production.yaml is
// valid with its secrets in the environment, and that it keeps the
// bounds docs/security.md promises: a small max_message, an idle timeout
// and a rate limit on every listener (TCP included), caps on connections
// and per IP, an IP budget, the HTTP API on loopback, no secret in the
// file.
func TestProductionExampleFile(t *testing.T) {
	c, err := cli.Load(cli.DefaultConfig("echo"), "../gatework.production.yaml",
		[]string{"GATEWORK_API_TOKEN=0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(appNames); err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) == 0 {
		t.Fatal("no listeners")
	}
	for _, l := range c.Listeners {
		if l.MaxMessage == 0 || l.MaxMessage > 1<<20 || l.IdleTimeout <= 0 || l.RateLimit.Messages == 0 || l.MaxQueueBytes == 0 {
			t.Errorf("listener %s: max_message %d, idle_timeout %v, rate_limit %+v, max_queue_bytes %d: every one must be set and bounded",
				l.Name, l.MaxMessage, l.IdleTimeout, l.RateLimit, l.MaxQueueBytes)
		}
		if l.Protocol == "ws" && len(l.Origins) == 0 {
			t.Errorf("listener %s: no origins", l.Name)
		}
	}
	g := c.Gateway
	if g.MaxConns == 0 || g.MaxConnsPerIP == 0 || g.MaxNewConnsPerSec == 0 || g.IPRateLimit.Messages == 0 {
		t.Errorf("gateway bounds not all set: %+v", g)
	}
	if !strings.HasPrefix(c.HTTP.Addr, "127.0.0.1:") || c.HTTP.Token == "" {
		t.Errorf("http: addr %q, token set %v: want loopback and the token of the environment", c.HTTP.Addr, c.HTTP.Token != "")
	}
	file, err := cli.Load(cli.DefaultConfig("echo"), "../gatework.production.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if file.HTTP.Token != "" || len(file.HTTP.Tokens) != 0 || file.NATS.Password != "" {
		t.Error("a secret in gatework.production.yaml: give secrets in the environment")
	}
}

// TestDocsExample checks the example of docs/config.md.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(doc), "## Example\n\n```yaml\n")
	if !ok {
		t.Fatal("no example in docs/config.md")
	}
	example, _, _ = strings.Cut(example, "```")
	if _, err := load(t, example, []string{"GATEWORK_NATS_PASSWORD=pw"}); err != nil {
		t.Fatalf("the example of docs/config.md is invalid:\n%v", err)
	}
}

// TestDocsCoverEveryKey checks that docs/config.md documents every key,
// with its environment variable.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cli.DefaultConfig("echo").YAML()
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(out, &tree); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
			} else if k != "listeners" {
				keys = append(keys, prefix+k)
			}
		}
	}
	flatten("", tree)
	if len(keys) < 25 {
		t.Fatalf("only %d keys found: %v", len(keys), keys)
	}
	for _, k := range keys {
		env := "GATEWORK_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(k) + "` \\|.*`" + env + "`")
		if !row.Match(doc) {
			t.Errorf("docs/config.md has no row for %s with %s", k, env)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[gateway.ListenerConfig](), reflect.TypeFor[framing.Config]()} {
		for i := range typ.NumField() {
			tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			if tag != "" && !bytes.Contains(doc, []byte("| `"+tag+"` |")) {
				t.Errorf("docs/config.md has no row for listener key %s", tag)
			}
		}
	}
}

// TestYAMLRoundTrip checks that what `gatework config` prints loads back
// to the same configuration.
func TestYAMLRoundTrip(t *testing.T) {
	c, err := load(t, "listeners:\n  - {protocol: tcp, addr: \"127.0.0.1:0\", framing: {kind: line, delimiter: \"\\r\\n\"}}\n  - {protocol: ws, addr: \"127.0.0.1:0\", path: /x}\nhttp: {token: abc}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Effective().YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := load(t, string(out), nil)
	if err != nil {
		t.Fatalf("printed config does not load:\n%s\n%v", out, err)
	}
	again, _ := back.Effective().YAML()
	if !bytes.Equal(out, again) {
		t.Errorf("round trip changed the config:\n%s\nthen:\n%s", out, again)
	}
	if back.Listeners[0].Framing.Delimiter != "\r\n" || back.HTTP.Token != "abc" {
		t.Errorf("lost values: %+v", back)
	}
	masked, _ := c.Masked().YAML()
	if bytes.Contains(masked, []byte("abc")) || !bytes.Contains(masked, []byte("*****")) {
		t.Errorf("token not masked:\n%s", masked)
	}
}
