package cli

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/cli/workerflag"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/webhook"
)

// Config is the configuration of `gatework start`, in the shape of the
// YAML file (docs/config.md documents every key). DefaultConfig gives the
// defaults; Load lays a file and the environment over them; Validate
// checks the result. Every duration is written with a unit ("3s",
// "250ms"); a zero number or duration means the documented default.
type Config struct {
	// Prefix is the bus subject prefix; nodes and workers of one cluster
	// share it. "" means "gw".
	Prefix string `yaml:"prefix"`
	// Listeners are the client listeners. A list in the file replaces the
	// default list (ws on 127.0.0.1:7272, tcp line-framed on
	// 127.0.0.1:7273) as a whole.
	Listeners []gateway.ListenerConfig `yaml:"listeners"`
	HTTP      HTTPConfig               `yaml:"http"`
	NATS      NATSConfig               `yaml:"nats"`
	Worker    WorkerConfig             `yaml:"worker"`
	Gateway   GatewayConfig            `yaml:"gateway"`
	API       APIConfig                `yaml:"api"`
	Log       LogConfig                `yaml:"log"`
	// ShutdownTimeout bounds a graceful stop after SIGINT or SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// PIDFile is the master's pid file; its control socket is beside it
	// (the same path with .sock for .pid). "" means
	// $XDG_RUNTIME_DIR/gatework.pid, else /tmp/gatework-<uid>.pid.
	PIDFile string `yaml:"pid_file"`
	// LogFile is where `start -d` writes the logs. "" means the pid
	// file's path with .log for .pid.
	LogFile string `yaml:"log_file"`

	// Where each key was last set ("gatework.yaml:12", "env GATEWORK_X",
	// "flag --x"), by key path; used to point at the culprit.
	origin map[string]string
}

// HTTPConfig is the `http` section: the HTTP API and health check.
type HTTPConfig struct {
	// Addr is host:port of the HTTP server; "" means no HTTP server.
	Addr string `yaml:"addr"`
	// Token is a bearer token of scope admin; "" means none. With no
	// token at all (token and tokens), loopback callers only.
	Token string `yaml:"token" secret:"true"`
	// Tokens are named bearer tokens, each with a scope (file only).
	Tokens []TokenConfig `yaml:"tokens,omitempty"`
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Timeout bounds one API call.
	Timeout Duration `yaml:"timeout"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// BodyTimeout bounds reading a request's whole body (408 beyond).
	BodyTimeout Duration `yaml:"body_timeout"`
	// IdleTimeout bounds a kept-alive connection's wait for its next
	// request.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds writing one answer, from its first byte.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxConns bounds the open HTTP connections.
	MaxConns int `yaml:"max_conns"`
	// HealthConns is how many connections beyond MaxConns are accepted
	// for /healthz, /readyz and /metrics only.
	HealthConns int `yaml:"health_conns"`
}

// TokenConfig is one entry of http.tokens.
type TokenConfig struct {
	// Name names the token in logs; required, unique.
	Name string `yaml:"name"`
	// Token is the secret; required, unique, no white space.
	Token string `yaml:"token"`
	// Scope is metrics, read, send or admin; "" means read.
	Scope string `yaml:"scope"`
}

// NATSConfig is the `nats` section: the bus.
type NATSConfig struct {
	// URL of an external NATS; "" means the embedded server.
	URL      string `yaml:"url"`
	User     string `yaml:"user"`
	Password string `yaml:"password" secret:"true"`
	// UserRole limits the embedded server's nats.user to one role's
	// permissions; "" means full access.
	UserRole string `yaml:"user_role"`
	// Token, NKeySeedFile and CredsFile: external NATS only.
	Token        string `yaml:"token" secret:"true"`
	NKeySeedFile string `yaml:"nkey_seed_file"`
	CredsFile    string `yaml:"creds_file"`
	// InsecureNoAuth allows an external NATS without credentials.
	InsecureNoAuth bool `yaml:"insecure_no_auth"`
	// TLS is TLS to the bus (see NATSTLSConfig).
	TLS NATSTLSConfig `yaml:"tls"`
	// Listen is where the embedded server accepts workers of other
	// processes; "" means in-process only.
	Listen string `yaml:"listen"`
	// MaxPayload is the embedded server's largest message.
	MaxPayload int32 `yaml:"max_payload"`
}

// WorkerConfig is the `worker` section: the workers of the node.
type WorkerConfig struct {
	// App is the built-in app the workers run, or "none".
	App string `yaml:"app"`
	// Processes is how many worker processes the master runs (children
	// of the binary on disk, replaced by reload); 0 means one worker
	// inside the master's process instead. DefaultConfig sets the number
	// of CPUs.
	Processes int `yaml:"processes"`
	// Concurrency is how many events run at once; 0 means 64×GOMAXPROCS.
	Concurrency int `yaml:"concurrency"`
	// GOMAXPROCS is the GOMAXPROCS of each worker process (and task
	// process). 0 means 1 when Processes is at least the number of CPUs
	// (the processes already spread over every core; one thread of Go
	// code each has the fewest wake-ups and hand-offs) and GOMAXPROCS is
	// not set in the master's environment, else the master's environment
	// decides (Go's default: every CPU).
	GOMAXPROCS int `yaml:"gomaxprocs"`
	// HeapFloor is how many bytes a worker process's heap may grow above
	// its live part before a collection while its collector is busy
	// (worker.Config.HeapFloor); 0 leaves GOGC alone. DefaultConfig sets
	// 16 MiB.
	HeapFloor int64 `yaml:"heap_floor"`
	// TaskProcesses is how many dedicated task processes the master runs
	// besides the worker processes (Swoole's task_worker_num): they run
	// the app's OnTask only, and the worker processes no longer take
	// tasks. 0 means the worker processes run OnTask themselves. Needs
	// worker processes (Processes > 0).
	TaskProcesses int `yaml:"task_processes"`
	// TaskConcurrency is how many tasks run at once in each process
	// that takes tasks; 0 means 16.
	TaskConcurrency int `yaml:"task_concurrency"`
	// TaskMaxAttempts is how many times a task runs at most when the
	// task workers running it are lost; 0 means 2 (one retry).
	TaskMaxAttempts int `yaml:"task_max_attempts"`
	// TaskMaxPayload is the largest task payload in bytes; 0 means
	// 512 KiB.
	TaskMaxPayload int `yaml:"task_max_payload"`
	// Webhook, when its url is set, serves the events with an HTTP
	// backend instead of an app (docs/webhook.md): `start` runs it in
	// the master (no worker processes, worker.app is not used), `worker`
	// as its own process.
	Webhook WebhookConfig `yaml:"webhook"`
}

// WebhookConfig is the `worker.webhook` section: see webhook.Config.
type WebhookConfig struct {
	// URL is the backend's http(s) endpoint; "" means no webhook.
	URL string `yaml:"url"`
	// Secret is the HMAC-SHA256 key that signs every request; "" signs
	// with an empty key (Validate refuses it with a URL).
	Secret string `yaml:"secret" secret:"true"`
	// Timeout bounds one POST; 0 means 5s.
	Timeout Duration `yaml:"timeout"`
	// MaxInFlight is how many batches are POSTed at once; 0 means 64.
	MaxInFlight int `yaml:"max_in_flight"`
	// Retries is how many times a failed POST is tried again; 0 means 2.
	Retries int `yaml:"retries"`
}

// hookConfig is the webhook part of w (Prefix and Logger not set).
func (w WorkerConfig) hookConfig() webhook.Config {
	h := w.Webhook
	return webhook.Config{URL: h.URL, Secret: h.Secret, Timeout: time.Duration(h.Timeout),
		MaxInFlight: h.MaxInFlight, Retries: h.Retries}
}

// GatewayConfig is the `gateway` section: see gateway.Config.
type GatewayConfig struct {
	// Processes is how many gateway processes `start` runs: 1 (or 0) means
	// the gateway runs inside the master; more means that many child
	// processes (`<binary> gateway` with the master's settings on stdin),
	// all listening on the listeners' addresses with SO_REUSEPORT, each a
	// gateway of the cluster, restarted when they crash (gwprocs.go).
	Processes int `yaml:"processes"`
	// GOMAXPROCS is the GOMAXPROCS of the process that runs the gateway:
	// the master (Processes 1) or each gateway process; 0 means
	// masterGOMAXPROCS's default for the master, and for gateway
	// processes one thread each when there are as many as CPUs.
	GOMAXPROCS        int      `yaml:"gomaxprocs"`
	Shards            int      `yaml:"shards"`
	Pollers           int      `yaml:"pollers"`
	NoIOUring         bool     `yaml:"no_io_uring"`
	EventTimeout      Duration `yaml:"event_timeout"`
	MaxBatch          int      `yaml:"max_batch"`
	MaxPendingEvents  int      `yaml:"max_pending_events"`
	MaxPendingBytes   int      `yaml:"max_pending_bytes"`
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	CloseTimeout      Duration `yaml:"close_timeout"`
	DrainWindow       Duration `yaml:"drain_window"`
	HandshakeTimeout  Duration `yaml:"handshake_timeout"`
	MaxConns          int      `yaml:"max_conns"`
	MaxConnsPerIP     int      `yaml:"max_conns_per_ip"`
	MaxNewConnsPerSec int      `yaml:"max_new_conns_per_sec"`
	MaxIPs            int      `yaml:"max_ips"`
	MaxGroups         int      `yaml:"max_groups"`
	// MaxInterestSubjects: see gateway.Config.MaxInterestSubjects.
	MaxInterestSubjects int `yaml:"max_interest_subjects"`
	// MaxQueuedBytes bounds the gateway's outbound backlog before it
	// pushes back on sends: see gateway.Config.MaxQueuedBytes.
	MaxQueuedBytes int64 `yaml:"max_queued_bytes"`
	// MaxQueueDelay bounds that backlog in time: see
	// gateway.Config.MaxQueueDelay.
	MaxQueueDelay Duration `yaml:"max_queue_delay"`
	// IPRateLimit is the message budget of one remote IP over all its
	// connections: see gateway.Config.IPRateLimit.
	IPRateLimit RateLimitConfig `yaml:"ip_rate_limit"`

	// MaxDeliveries, RedeliveryBackoff, RedeliveryBackoffMax,
	// DeadLetterPolicy and MaxInFlight: see the gateway.Config fields of
	// the same names.
	MaxDeliveries        int      `yaml:"max_deliveries"`
	RedeliveryBackoff    Duration `yaml:"redelivery_backoff"`
	RedeliveryBackoffMax Duration `yaml:"redelivery_backoff_max"`
	DeadLetterPolicy     string   `yaml:"dead_letter_policy"`
	MaxInFlight          int      `yaml:"max_in_flight"`
	// Dispatch: see gateway.Config.Dispatch (client or uid).
	Dispatch string `yaml:"dispatch"`
	// UIDGateLease: see gateway.Config.UIDGateLease.
	UIDGateLease Duration `yaml:"uid_gate_lease"`
}

// RateLimitConfig is a message budget: see gateway.RateLimit.
type RateLimitConfig struct {
	Messages int      `yaml:"messages"`
	Per      Duration `yaml:"per"`
	Burst    int      `yaml:"burst"`
	Policy   string   `yaml:"policy"`
}

// APIConfig is the `api` section: the API client used by the HTTP API and
// the in-process worker (see api.Config). The API token is http.token.
type APIConfig struct {
	QueryTimeout   Duration `yaml:"query_timeout"`
	RequestTimeout Duration `yaml:"request_timeout"`
}

// LogConfig is the `log` section (workerflag.LogConfig).
type LogConfig = workerflag.LogConfig

// Default addresses (SPEC §7).
const (
	DefaultWSAddr   = "127.0.0.1:7272"
	DefaultTCPAddr  = "127.0.0.1:7273"
	DefaultHTTPAddr = "127.0.0.1:7280"
)

// DefaultHeapFloor is worker.heap_floor's default: 16 MiB, four times the
// Go runtime's smallest heap goal.
const DefaultHeapFloor = 16 << 20

// DefaultConfig returns the defaults: every key of docs/config.md at its
// documented default, worker.app set to app (the first app of the binary,
// "echo" for gatework).
func DefaultConfig(app string) Config {
	// The gateway's own defaults; Shards stays 0 (one per CPU), and the
	// listeners are filled in by Effective.
	g := gateway.Config{}.WithDefaults()
	return Config{
		Prefix: g.Prefix,
		Listeners: []gateway.ListenerConfig{
			{Name: "ws", Protocol: "ws", Addr: DefaultWSAddr},
			{Name: "tcp", Protocol: "tcp", Addr: DefaultTCPAddr},
		},
		HTTP: HTTPConfig{
			Addr:              DefaultHTTPAddr,
			MaxBodyBytes:      8 << 20,
			Timeout:           Duration(10 * time.Second),
			ReadHeaderTimeout: Duration(node.DefaultHTTPReadHeaderTimeout),
			BodyTimeout:       Duration(node.DefaultHTTPBodyTimeout),
			IdleTimeout:       Duration(node.DefaultHTTPIdleTimeout),
			WriteTimeout:      Duration(node.DefaultHTTPWriteTimeout),
			MaxConns:          node.DefaultHTTPMaxConns,
			HealthConns:       node.DefaultHTTPHealthConns,
		},
		NATS:   NATSConfig{MaxPayload: natsembed.DefaultMaxPayload},
		Worker: WorkerConfig{App: app, Processes: runtime.NumCPU(), HeapFloor: DefaultHeapFloor},
		Gateway: GatewayConfig{
			Processes:           1,
			EventTimeout:        Duration(g.EventTimeout),
			MaxBatch:            g.MaxBatch,
			MaxPendingEvents:    g.MaxPendingEvents,
			MaxPendingBytes:     g.MaxPendingBytes,
			HeartbeatInterval:   Duration(g.HeartbeatInterval),
			CloseTimeout:        Duration(g.CloseTimeout),
			HandshakeTimeout:    Duration(g.HandshakeTimeout),
			MaxIPs:              g.MaxIPs,
			IPRateLimit:         RateLimitConfig{Per: Duration(g.IPRateLimit.Per), Policy: g.IPRateLimit.Policy},
			MaxGroups:           g.MaxGroups,
			MaxInterestSubjects: g.MaxInterestSubjects,
			MaxQueuedBytes:      g.MaxQueuedBytes,
			MaxQueueDelay:       Duration(g.MaxQueueDelay),

			MaxDeliveries:        g.MaxDeliveries,
			RedeliveryBackoff:    Duration(g.RedeliveryBackoff),
			RedeliveryBackoffMax: Duration(g.RedeliveryBackoffMax),
			DeadLetterPolicy:     g.DeadLetterPolicy,
			MaxInFlight:          g.MaxInFlight,
			Dispatch:             g.Dispatch,
			UIDGateLease:         Duration(g.UIDGateLease),
		},
		API: APIConfig{
			QueryTimeout:   Duration(api.DefaultQueryTimeout),
			RequestTimeout: Duration(api.DefaultRequestTimeout),
		},
		Log:             LogConfig{Level: "info", Format: "text"},
		ShutdownTimeout: Duration(15 * time.Second),
	}
}

// Duration is a time.Duration written with a unit in YAML and in the
// environment ("1.5s", "250ms", "2m"); a bare number is refused, so that
// "3" is not silently 3 nanoseconds.
type Duration time.Duration

// String returns the duration as time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as a string with a unit.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration with a unit. Its errors are
// *yaml.TypeError with the line, so that decoding goes on and reports
// every bad key.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		if err == nil {
			err = fmt.Errorf("not a duration")
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration with a unit (such as 3s or 250ms)", s)
	}
	return Duration(v), nil
}

// keyField is one scalar key of Config: its path ("http.addr"), its
// environment variable and where it lives in a Config.
type keyField struct {
	path   string
	env    string
	secret bool
	index  []int // reflect field index path from Config
}

// durationType is the reflect type of Duration.
var durationType = reflect.TypeFor[Duration]()

// scalarKeys lists every scalar key of Config in file order (listeners,
// a list, is not one: it is set in the file or by --ws/--tcp).
var scalarKeys = func() []keyField {
	var out []keyField
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			path := prefix + tag
			idx := append(append([]int(nil), index...), i)
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				walk(f.Type, path+".", idx)
			case f.Type.Kind() == reflect.Slice:
				// listeners: not a scalar key
			default:
				out = append(out, keyField{
					path:   path,
					env:    envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_")),
					secret: f.Tag.Get("secret") == "true",
					index:  idx,
				})
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}()

// set parses s into the key of c.
func (k keyField) set(c *Config, s string) error {
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	switch {
	case v.Type() == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.CanInt():
		var n int64
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || v.OverflowInt(n) {
			return fmt.Errorf("%q is not an integer of %d bits", s, v.Type().Bits())
		}
		v.SetInt(n)
	case v.Kind() == reflect.Bool:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "1", "yes", "on":
			v.SetBool(true)
		case "false", "0", "no", "off":
			v.SetBool(false)
		default:
			return fmt.Errorf("%q is not true or false", s)
		}
	default:
		return fmt.Errorf("cannot set a %s", v.Type())
	}
	return nil
}

// get returns the key's value in c as it prints.
func (k keyField) get(c *Config) string {
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	if v.Type() == durationType {
		return Duration(v.Int()).String()
	}
	return fmt.Sprint(v.Interface())
}

// integer returns the key's value in c if it is a number or a duration.
func (k keyField) integer(c *Config) (int64, bool) {
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	if !v.CanInt() {
		return 0, false
	}
	return v.Int(), true
}

// keyByPath returns the scalar key named path.
func keyByPath(path string) (keyField, bool) {
	for _, k := range scalarKeys {
		if k.path == path {
			return k, true
		}
	}
	return keyField{}, false
}

// setOrigin records where key was set last.
func (c *Config) setOrigin(key, where string) {
	if c.origin == nil {
		c.origin = map[string]string{}
	}
	c.origin[key] = where
}

// originOf returns where key, or the nearest enclosing key, was set; ""
// for a default.
func (c *Config) originOf(key string) string {
	for k := key; k != ""; {
		if o, ok := c.origin[k]; ok {
			return o
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return ""
}

// Masked returns a copy of c with every secret (http.token, the tokens of
// http.tokens, nats.password, nats.token) replaced by "*****" when it is
// set, and the password of a user:password@ in nats.url by xxxxx.
func (c Config) Masked() Config {
	c.NATS.URL = bus.RedactURL(c.NATS.URL)
	c.HTTP.Tokens = slices.Clone(c.HTTP.Tokens)
	for i := range c.HTTP.Tokens {
		if c.HTTP.Tokens[i].Token != "" {
			c.HTTP.Tokens[i].Token = "*****"
		}
	}
	for _, k := range scalarKeys {
		if !k.secret {
			continue
		}
		v := reflect.ValueOf(&c).Elem().FieldByIndex(k.index)
		if v.String() != "" {
			v.SetString("*****")
		}
	}
	return c
}

// YAML writes c as YAML, leaving out the listener options that do
// not belong to a listener's protocol (they are zero). Secrets are written
// as they are: print c.Masked() to hide them.
func (c Config) YAML() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, fmt.Errorf("cli: encode config: %w", err)
	}
	if ls := mappingValue(&n, "listeners"); ls != nil {
		for _, l := range ls.Content {
			pruneListener(l)
		}
	}
	quoteControl(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("cli: encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("cli: encode config: %w", err)
	}
	return b.Bytes(), nil
}

// quoteControl writes strings holding control characters (a "\r\n"
// delimiter) double-quoted with escapes, instead of as block scalars.
func quoteControl(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && strings.ContainsFunc(n.Value, unicode.IsControl) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quoteControl(c)
	}
}

// mappingValue returns the value of key in mapping node m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// pruneListener drops zero-valued scalars (defaults, or options of the
// other protocol) from a listener, its framing and its tls, and an empty
// framing.
func pruneListener(l *yaml.Node) {
	for _, sub := range []string{"framing", "tls", "compression"} {
		if f := mappingValue(l, sub); f != nil {
			dropZero(f)
		}
	}
	dropZero(l)
}

func dropZero(m *yaml.Node) {
	if m.Kind != yaml.MappingNode {
		return
	}
	keep := m.Content[:0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		zero := false
		switch v.Kind {
		case yaml.ScalarNode:
			zero = v.Value == "" || v.Value == "0" || v.Value == "0s" || v.Value == "false"
		case yaml.MappingNode:
			zero = len(v.Content) == 0
		}
		if !zero {
			keep = append(keep, k, v)
		}
	}
	m.Content = keep
}
