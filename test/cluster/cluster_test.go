//go:build cluster && linux

package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The layout of every test's hosts (1-based host numbers, 10.77.0.<k>).
const (
	natsHosts   = 3 // hosts 1..3 each run a nats-server and may run a gateway
	workerHost  = 4 // worker processes and the API process
	clientHost  = 5 // the test's clients dial from here
	hostCount   = 5
	natsPort    = 4222
	routePort   = 6222
	monitorPort = 8222
	wsPort      = 7272
	healthPort  = 7281
	apiPort     = 7280
)

// clusterOpts says what a test's cluster runs.
type clusterOpts struct {
	// gateways: hosts 1..gateways run a gateway; 0 means 3.
	gateways int
	// workers: echo worker processes on the worker host; 0 means 2.
	workers int
}

// cluster is a test's whole deployment: hosts, a 3-node NATS cluster,
// gateways, workers and the API process.
type cluster struct {
	t        *testing.T
	nw       *network
	dir      string
	natsPass string
	token    string
	nats     []*proc // nats[k-1] runs on host k
	gws      []*gateway
	workers  []*proc
	api      *proc
	http     *http.Client // dials from the client host
}

// gateway is one gateway process.
type gateway struct {
	host int
	id   string
	p    *proc
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newCluster starts everything and returns once each part is ready.
func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	needCluster(t)
	if o.gateways == 0 {
		o.gateways = 3
	}
	if o.workers == 0 {
		o.workers = 2
	}
	c := &cluster{t: t, nw: newNetwork(t, hostCount), dir: t.TempDir(), natsPass: randomHex(12), token: randomHex(12)}
	c.http = &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{DialContext: dialer(c.ns(clientHost)), MaxIdleConnsPerHost: 64},
	}
	t.Cleanup(c.http.CloseIdleConnections)
	for k := 1; k <= natsHosts; k++ {
		c.nats = append(c.nats, c.startNATS(k))
	}
	waitFor(t, 20*time.Second, "the NATS cluster's routes", func() bool {
		for k := 1; k <= natsHosts; k++ {
			if c.routes(k) != natsHosts-1 {
				return false
			}
		}
		return true
	})
	for k := 1; k <= o.gateways; k++ {
		c.gws = append(c.gws, c.startGateway(k))
	}
	for i := range o.workers {
		c.workers = append(c.workers, c.startWorker(i))
	}
	c.api = startProc(t, "api", c.ns(workerHost), gateworkBin, nil, "api", "-c", c.writeConfig("api.yaml", ""))
	waitFor(t, 20*time.Second, "the API process's /healthz", func() bool { return c.healthy(workerHost, apiPort) })
	return c
}

// ns returns host k's namespace.
func (c *cluster) ns(k int) string { return c.nw.hosts[k-1] }

// natsURLs is the URL list every process is given.
func (c *cluster) natsURLs() string {
	var urls []string
	for k := 1; k <= natsHosts; k++ {
		urls = append(urls, "nats://"+hostAddr(k, natsPort))
	}
	return strings.Join(urls, ",")
}

// startNATS starts the nats-server of host k, a member of the 3-node
// cluster with authenticated clients and routes.
func (c *cluster) startNATS(k int) *proc {
	var routes []string
	for j := 1; j <= natsHosts; j++ {
		if j != k {
			routes = append(routes, fmt.Sprintf("nats-route://route:%s@%s", c.natsPass, hostAddr(j, routePort)))
		}
	}
	conf := fmt.Sprintf(`server_name: n%d
listen: %q
http: %q
authorization { user: gatework, password: %q }
cluster {
  name: gwct
  listen: %q
  authorization { user: route, password: %q }
  routes: [%s]
}
`, k, hostAddr(k, natsPort), hostAddr(k, monitorPort), c.natsPass, hostAddr(k, routePort), c.natsPass, strings.Join(routes, ", "))
	path := filepath.Join(c.dir, fmt.Sprintf("nats%d.conf", k))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return startProc(c.t, fmt.Sprintf("nats%d", k), c.ns(k), natsBin, nil, "-c", path)
}

// routes returns the number of peers nats-server k has routes to, -1 on
// error.
func (c *cluster) routes(k int) int {
	resp, err := c.http.Get("http://" + hostAddr(k, monitorPort) + "/routez")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if json.NewDecoder(resp.Body).Decode(&rz) != nil {
		return -1
	}
	peers := map[string]bool{} // a pool of connections per peer
	for _, r := range rz.Routes {
		peers[r.RemoteName] = true
	}
	return len(peers)
}

// writeConfig writes a gatework configuration file for one process: the
// NATS cluster with credentials, the API token, JSON logs, and extra.
func (c *cluster) writeConfig(name, extra string) string {
	conf := fmt.Sprintf(`nats:
  url: %q
  user: gatework
  password: %q
http:
  addr: %q
  token: %q
log:
  format: json
shutdown_timeout: 5s
`, c.natsURLs(), c.natsPass, hostAddr(workerHost, apiPort), c.token) + extra
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// startGateway starts a gateway on host k and waits until it is healthy.
func (c *cluster) startGateway(k int) *gateway {
	t := c.t
	path := c.writeConfig(fmt.Sprintf("gateway%d.yaml", k), fmt.Sprintf(`listeners:
  - {name: ws, protocol: ws, addr: %q}
gateway:
  max_pending_events: 100000
  max_pending_bytes: 67108864
`, hostAddr(k, wsPort)))
	p := startProc(t, fmt.Sprintf("gateway%d", k), c.ns(k), gateworkBin, nil,
		"gateway", "-c", path, "--http", hostAddr(k, healthPort))
	g := &gateway{host: k, p: p}
	waitFor(t, 20*time.Second, fmt.Sprintf("gateway %d ready", k), func() bool {
		if !p.running() {
			t.Fatalf("gateway %d exited:\n%s", k, p.logged())
		}
		g.id = readyField(p.logged(), "gateway")
		return g.id != "" && c.healthy(k, healthPort)
	})
	return g
}

// startWorker starts echo worker process i on the worker host and waits
// until it serves.
func (c *cluster) startWorker(i int) *proc {
	t := c.t
	p := startProc(t, fmt.Sprintf("worker%d", i), c.ns(workerHost), gateworkBin, nil,
		"worker", "--app", "echo", "-c", c.writeConfig(fmt.Sprintf("worker%d.yaml", i), "worker:\n  concurrency: 64\n"))
	waitFor(t, 20*time.Second, fmt.Sprintf("worker %d ready", i), func() bool {
		if !p.running() {
			t.Fatalf("worker %d exited:\n%s", i, p.logged())
		}
		return strings.Contains(p.logged(), `"msg":"worker ready"`)
	})
	return p
}

// readyField returns field of the first JSON log line whose msg is
// "ready", or "".
func readyField(logs, field string) string {
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "ready" {
			continue
		}
		s, _ := rec[field].(string)
		return s
	}
	return ""
}

// healthy reports whether GET /healthz on host k answers 200.
func (c *cluster) healthy(k, port int) bool {
	resp, err := c.http.Get("http://" + hostAddr(k, port) + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// apiReply is the body of an HTTP API answer.
type apiReply struct {
	Result  json.RawMessage `json:"result"`
	Partial bool            `json:"partial"`
	Missing []string        `json:"missing"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Status  int
	Elapsed time.Duration
}

// page is the result of a list method.
type page struct {
	Items      []string `json:"items"`
	NextCursor string   `json:"next_cursor"`
	Partial    bool     `json:"partial"`
	Missing    []string `json:"missing"`
}

// call POSTs to /api/method of the API process and decodes the answer; a
// transport error fails the test.
func (c *cluster) call(t *testing.T, method string, body any) apiReply {
	t.Helper()
	r, err := c.post(method, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// post is call for any goroutine: it returns transport errors; an API
// error is in the reply.
func (c *cluster) post(method string, body any) (apiReply, error) {
	var r apiReply
	b, err := json.Marshal(body)
	if err != nil {
		return r, err
	}
	if string(b) == "null" {
		b = []byte("{}")
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+hostAddr(workerHost, apiPort)+"/api/"+method, bytes.NewReader(b))
	if err != nil {
		return r, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return r, fmt.Errorf("%s: %w", method, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("%s: decode: %w", method, err)
	}
	r.Status, r.Elapsed = resp.StatusCode, time.Since(start)
	return r, nil
}

// postOK is post that also turns an API error into an error.
func (c *cluster) postOK(method string, body any) (apiReply, error) {
	r, err := c.post(method, body)
	if err == nil && (r.Error != nil || r.Status != http.StatusOK) {
		err = fmt.Errorf("%s: status %d, error %+v", method, r.Status, r.Error)
	}
	return r, err
}

// ok calls method and fails the test on an API error.
func (c *cluster) ok(t *testing.T, method string, body any) apiReply {
	t.Helper()
	r := c.call(t, method, body)
	if r.Error != nil || r.Status != http.StatusOK {
		t.Fatalf("%s %v: status %d, error %+v", method, body, r.Status, r.Error)
	}
	return r
}

// count calls a count method and returns the number and coverage.
func (c *cluster) count(t *testing.T, method string, body any) (int, apiReply) {
	t.Helper()
	r := c.ok(t, method, body)
	n, err := strconv.Atoi(string(r.Result))
	if err != nil {
		t.Fatalf("%s: result %s is not a number", method, r.Result)
	}
	return n, r
}

// list walks every page of a list method with limit items per page and
// returns the items, failing on a repeated item or a partial page.
func (c *cluster) list(t *testing.T, method string, body map[string]any, limit int) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	cursor := ""
	for range 10000 {
		req := map[string]any{"limit": limit, "cursor": cursor}
		for k, v := range body {
			req[k] = v
		}
		r := c.ok(t, method, req)
		var p page
		if err := json.Unmarshal(r.Result, &p); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if p.Partial {
			t.Fatalf("%s: partial page, missing %v", method, p.Missing)
		}
		// Without unique, the copies of one item stay on one page.
		if len(p.Items) > limit && body["unique"] != false {
			t.Fatalf("%s: %d items in a page of %d", method, len(p.Items), limit)
		}
		for _, it := range p.Items {
			if seen[it] && body["unique"] != false {
				t.Fatalf("%s: %q repeated across pages", method, it)
			}
			seen[it] = true
			all = append(all, it)
		}
		if p.NextCursor == "" {
			return all
		}
		cursor = p.NextCursor
	}
	t.Fatalf("%s: more than 10000 pages", method)
	return nil
}

// wsClient is one WebSocket client dialed from the client host.
type wsClient struct {
	conn     *websocket.Conn
	gw       int    // host of its gateway
	port     string // its local port, as the gateway sees it
	id       string // client id, once looked up
	in       chan string
	received atomic.Int64
	closed   chan struct{}
	closeErr error
	wmu      sync.Mutex
}

// dial connects a client to the gateway on host k. With keep, received
// messages are queued on in (bounded: an overflow ends the client);
// otherwise only counted. The connection is closed when the test ends.
func (c *cluster) dial(t *testing.T, k int, keep bool) *wsClient {
	t.Helper()
	w, err := c.dialErr(k, keep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.conn.Close() })
	return w
}

// dialErr is dial for any goroutine; the caller closes the connection.
func (c *cluster) dialErr(k int, keep bool) (*wsClient, error) {
	d := websocket.Dialer{NetDialContext: dialer(c.ns(clientHost)), HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial("ws://"+hostAddr(k, wsPort)+"/", nil)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %d: %w", k, err)
	}
	_, port, _ := net.SplitHostPort(conn.LocalAddr().String())
	w := &wsClient{conn: conn, gw: k, port: port, closed: make(chan struct{})}
	if keep {
		w.in = make(chan string, 4096)
	}
	go func() {
		defer close(w.closed)
		for {
			_, m, err := conn.ReadMessage()
			if err != nil {
				w.closeErr = err
				return
			}
			w.received.Add(1)
			if w.in != nil {
				select {
				case w.in <- string(m):
				default:
					w.closeErr = fmt.Errorf("test client queue overflow")
					conn.Close()
					return
				}
			}
		}
	}()
	return w, nil
}

// send writes a text message.
func (w *wsClient) send(t *testing.T, msg string) {
	t.Helper()
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := w.conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Errorf("client on gateway %d: send: %v", w.gw, err)
	}
}

// next returns the next message, failing after timeout.
func (w *wsClient) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case m := <-w.in:
		return m
	case <-w.closed:
		t.Fatalf("client %s on gateway %d closed: %v", w.id, w.gw, w.closeErr)
	case <-time.After(timeout):
		t.Fatalf("client %s on gateway %d: no message within %v", w.id, w.gw, timeout)
	}
	return ""
}

// isClosed reports whether the client's connection ended.
func (w *wsClient) isClosed() bool {
	select {
	case <-w.closed:
		return true
	default:
		return false
	}
}

// identify looks up every client's id: the cluster-wide client list, then
// each id's remote port. All of the cluster's clients must be in cs.
func (c *cluster) identify(t *testing.T, cs []*wsClient) {
	t.Helper()
	byPort := map[string]*wsClient{}
	for _, w := range cs {
		byPort[w.port] = w
	}
	ids := c.list(t, "getClientList", nil, 1000)
	if len(ids) != len(cs) {
		t.Fatalf("getClientList: %d ids for %d clients", len(ids), len(cs))
	}
	for _, id := range ids {
		r := c.ok(t, "getClientInfo", map[string]any{"client": id, "fields": 3})
		var info struct {
			RemotePort int `json:"remote_port"`
		}
		if err := json.Unmarshal(r.Result, &info); err != nil {
			t.Fatal(err)
		}
		w := byPort[strconv.Itoa(info.RemotePort)]
		if w == nil || w.id != "" {
			t.Fatalf("client %s: remote port %d matches no client of the test", id, info.RemotePort)
		}
		w.id = id
	}
}

// waitCount waits until getClientCount is n and complete.
func (c *cluster) waitCount(t *testing.T, n int, within time.Duration) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("a complete client count of %d", n), func() bool {
		got, r := c.count(t, "getClientCount", nil)
		return got == n && !r.Partial
	})
}
