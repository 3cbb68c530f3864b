package workerkit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/codec"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/node"
	"github.com/gatework/gatework/webhook"
)

func TestMain(m *testing.M) {
	if os.Getenv(envGoWorker) != "" {
		os.Exit(runGoWorker())
	}
	os.Exit(m.Run())
}

// kitSecret signs the webhook requests of the kit's node.
const kitSecret = "workerkit-secret"

// target is an implementation under test.
type target struct {
	name    string
	webhook bool     // a webhook backend behind the node's webhook mode; else a bus worker
	argv    []string // its command line
	env     []string // extra environment
	// node names the Node program it needs (its packages must be
	// installed when modules is set); "" for none.
	node    string
	modules bool
}

// targets returns the implementations to check: the ones named by
// GATEWORK_KIT_WORKER and GATEWORK_KIT_WEBHOOK, or the three built in.
func targets(t *testing.T) []target {
	var out []target
	if v := os.Getenv("GATEWORK_KIT_WORKER"); v != "" {
		out = append(out, target{name: "worker", argv: strings.Fields(v)})
	}
	if v := os.Getenv("GATEWORK_KIT_WEBHOOK"); v != "" {
		out = append(out, target{name: "webhook", webhook: true, argv: strings.Fields(v)})
	}
	if len(out) > 0 {
		return out
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	nodeWorker := filepath.Join(root, "examples/node-worker/worker.mjs")
	backend := filepath.Join(root, "examples/webhook-backend/server.mjs")
	return []target{
		{name: "go", argv: []string{self, "-test.run=^$"}, env: []string{envGoWorker + "=1"}},
		{name: "node", argv: []string{"node", nodeWorker}, node: nodeWorker, modules: true},
		{name: "webhook-node", webhook: true, argv: []string{"node", backend}, node: backend},
	}
}

// needNode skips (fails under CI=true) when tg needs Node.js and it or
// its packages are missing.
func needNode(t *testing.T, tg target) {
	t.Helper()
	if tg.node == "" {
		return
	}
	miss := ""
	if _, err := exec.LookPath("node"); err != nil {
		miss = "node is not installed"
	} else if _, err := os.Stat(filepath.Join(filepath.Dir(tg.node), "node_modules", "nats")); tg.modules && err != nil {
		miss = "the packages of " + filepath.Dir(tg.node) + " are not installed: run test/workerkit/setup.sh"
	}
	if miss == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipped)", miss)
	}
	t.Skip(miss)
}

// kit is a node without a worker of its own and the implementation under
// test serving it.
type kit struct {
	root *testing.T // the target's test: owns the node and the process
	t    *testing.T // the check running now
	tg   target
	n    *node.Node
	env  []string
	out  *syncBuffer
	mu   sync.Mutex
	proc *exec.Cmd
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startKit(t *testing.T, tg target) *kit {
	t.Helper()
	needNode(t, tg)
	cfg := node.Config{
		Gateway: gateway.Config{
			Listeners: []gateway.ListenerConfig{
				{Protocol: "ws", Addr: "127.0.0.1:0"},
				{Protocol: "tcp", Addr: "127.0.0.1:0"},
				// OnWebSocketConnect before the 101 (upgrade_hook).
				{Name: "hook", Protocol: "ws", Addr: "127.0.0.1:0", UpgradeHook: true, UpgradeTimeout: 10 * time.Second},
				// Messages decoded by the kit's codec (Event.value), and
				// those it refuses as decode_error events.
				{Name: "codec", Protocol: "ws", Addr: "127.0.0.1:0", Codec: "kit", DecodeError: "event"},
			},
			Codecs: map[string]codec.Codec{"kit": kitCodec{}},
			// Short for the redelivery checks, yet above 1.5 progress
			// intervals (1s): the first progress ack of a batch comes
			// within 1.5s of its arrival.
			EventTimeout: 2 * time.Second,
		},
		NATS:   node.NATSConfig{Listen: "127.0.0.1:0"},
		HTTP:   node.HTTPConfig{Addr: "127.0.0.1:0"},
		Logger: slog.New(slog.DiscardHandler),
	}
	port := 0
	if tg.webhook {
		port = freePort(t)
		cfg.Webhook = webhook.Config{URL: fmt.Sprintf("http://127.0.0.1:%d/events", port), Secret: kitSecret}
	}
	n, err := node.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := &kit{root: t, t: t, tg: tg, n: n, out: &syncBuffer{}}
	o := n.WorkerOptions("")
	k.env = append(os.Environ(), tg.env...)
	k.env = append(k.env, "GATEWORK_NATS_URL="+o.URL, "GATEWORK_NATS_USER="+o.User,
		"GATEWORK_NATS_PASSWORD="+o.Password, "GATEWORK_PREFIX=gw")
	if tg.webhook {
		k.env = append(k.env, fmt.Sprintf("PORT=%d", port), "GATEWORK_WEBHOOK_SECRET="+kitSecret,
			"GATEWORK_API_URL=http://"+n.HTTPAddr().String())
	}
	t.Cleanup(k.stop)
	k.startProc()
	// Ready when a first message makes the round trip (the gateway holds
	// the events until a worker serves them).
	ws := k.dial("/")
	k.write(ws, websocket.TextMessage, []byte("ready?"))
	if _, got := k.read(ws, 30*time.Second); string(got) != "ready?" {
		t.Fatalf("first echo %q", got)
	}
	return k
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (k *kit) startProc() {
	k.t.Helper()
	// $PORT and the like in the command line name the variables it gets.
	vars := map[string]string{}
	for _, kv := range k.env {
		name, val, _ := strings.Cut(kv, "=")
		vars[name] = val
	}
	argv := make([]string, len(k.tg.argv))
	for i, a := range k.tg.argv {
		argv[i] = os.Expand(a, func(name string) string { return vars[name] })
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = k.env
	cmd.Stdout, cmd.Stderr = k.out, k.out
	if err := cmd.Start(); err != nil {
		k.t.Fatalf("start %v: %v", k.tg.argv, err)
	}
	k.mu.Lock()
	k.proc = cmd
	k.mu.Unlock()
}

// kill ends the process under test with SIGKILL.
func (k *kit) kill() {
	k.mu.Lock()
	p := k.proc
	k.proc = nil
	k.mu.Unlock()
	if p != nil {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
}

// stop closes the node while the implementation still serves its close
// events, then stops the process (SIGTERM, SIGKILL after 5s).
func (k *kit) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.n.Shutdown(ctx); err != nil {
		k.root.Errorf("node shutdown: %v", err)
	}
	k.mu.Lock()
	p := k.proc
	k.proc = nil
	k.mu.Unlock()
	if p != nil {
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if k.root.Failed() {
		k.root.Logf("output of %v:\n%s", k.tg.argv, k.out.String())
	}
}

func (k *kit) dial(path string) *websocket.Conn {
	k.t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+k.n.Addr("ws").String()+path, nil)
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { _ = ws.Close() })
	return ws
}

func (k *kit) write(ws *websocket.Conn, typ int, msg []byte) {
	k.t.Helper()
	if err := ws.WriteMessage(typ, msg); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kit) read(ws *websocket.Conn, within time.Duration) (int, []byte) {
	k.t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(within))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		k.t.Fatalf("read: %v", err)
	}
	return typ, data
}

// ask sends msg and returns the next message.
func (k *kit) ask(ws *websocket.Conn, msg string) string {
	k.t.Helper()
	k.write(ws, websocket.TextMessage, []byte(msg))
	_, got := k.read(ws, 10*time.Second)
	return string(got)
}

// closeNote is what the kit's app sends to uid "observer" for a close
// event.
type closeNote struct {
	Event   string         `json:"event"`
	Client  string         `json:"client"`
	Reason  string         `json:"reason"`
	UID     string         `json:"uid"`
	Groups  []string       `json:"groups"`
	Session map[string]any `json:"session"`
}

func TestConformance(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			k := startKit(t, tg)
			t.Run("echo", k.checkEcho)
			t.Run("order", k.checkOrder)
			t.Run("session", k.checkSession)
			t.Run("close", k.checkClose)
			t.Run("reject", k.checkReject)
			t.Run("upgrade_hook", k.checkUpgradeHook)
			t.Run("codec", k.checkCodec)
			t.Run("progress", k.checkProgress)
			t.Run("drain", k.checkDrain)
			t.Run("sigkill", k.checkKill)
		})
	}
}

// checkEcho: text, binary and empty messages come back byte for byte, in
// the frame type they were sent in.
func (k *kit) checkEcho(t *testing.T) {
	k.t = t
	ws := k.dial("/")
	tests := []struct {
		name string
		typ  int
		msg  []byte
	}{
		{"text", websocket.TextMessage, []byte("hello")},
		{"unicode, NUL, CR LF", websocket.TextMessage, []byte("é😀\x00\r\n")},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 0xff, 0xfe, 0}},
		{"binary valid UTF-8", websocket.BinaryMessage, []byte("text-like")},
		{"large binary", websocket.BinaryMessage, bytes.Repeat([]byte{0, 'a', 0xc3, '\n'}, 50_000)},
	}
	for _, tt := range tests {
		k.write(ws, tt.typ, tt.msg)
		typ, got := k.read(ws, 10*time.Second)
		if typ != tt.typ || !bytes.Equal(got, tt.msg) {
			t.Errorf("%s: got type %d, %d bytes %.40q; want type %d, %d bytes %.40q", tt.name, typ, len(got), got, tt.typ, len(tt.msg), tt.msg)
		}
	}
	// Empty messages: over TCP with line framing (the WebSocket engine
	// does not deliver empty data frames).
	c, err := net.Dial("tcp", k.n.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("line one\n\nlast\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, want := range []string{"line one\n", "\n", "last\n"} {
		got, err := r.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("tcp: got %q (%v), want %q", got, err, want)
		}
	}
}

// checkOrder: each client's messages come back in the order sent, with
// several clients at once.
func (k *kit) checkOrder(t *testing.T) {
	k.t = t
	const clients, msgs = 3, 60
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = k.dial("/")
	}
	var wg sync.WaitGroup
	for c, ws := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range msgs {
				if err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "c%d-%03d", c, i)); err != nil {
					t.Error(err)
					return
				}
			}
			for i := range msgs {
				_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
				_, got, err := ws.ReadMessage()
				if err != nil {
					t.Error(err)
					return
				}
				if want := fmt.Sprintf("c%d-%03d", c, i); string(got) != want {
					t.Errorf("client %d: message %d is %q, want %q", c, i, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// checkSession: a session change of one event is seen by the client's
// next events, in the same batch or a later one; the worker's view of
// groups and session includes the connect event's actions.
func (k *kit) checkSession(t *testing.T) {
	k.t = t
	ws := k.dial("/")
	for _, m := range []string{"cmd:count", "cmd:count", "cmd:count"} {
		k.write(ws, websocket.TextMessage, []byte(m))
	}
	for i := 1; i <= 3; i++ {
		if _, got := k.read(ws, 10*time.Second); string(got) != fmt.Sprintf("n=%d", i) {
			t.Fatalf("count %d: got %q", i, got)
		}
	}
	// Bound on connect, from the upgrade request's query.
	dave := k.dial("/?uid=dave")
	if got := k.ask(dave, "cmd:state"); !strings.Contains(got, `"uid":"dave"`) {
		t.Fatalf("state after ?uid=dave: %s", got)
	}
	if got := k.ask(ws, "cmd:bind:carol"); got != "bound:carol" {
		t.Fatalf("bind: got %q", got)
	}
	var st struct {
		UID     string         `json:"uid"`
		Groups  []string       `json:"groups"`
		Session map[string]any `json:"session"`
	}
	raw := k.ask(ws, "cmd:state")
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("state %q: %v", raw, err)
	}
	if st.UID != "carol" || len(st.Groups) != 1 || st.Groups[0] != "kit" || st.Session["n"] != float64(3) {
		t.Fatalf("state %s: want uid carol, groups [kit], session n=3", raw)
	}
}

// checkClose: a close event carries the reason and the uid, groups and
// session the client had; ACTION_CLOSE's final message arrives before a
// normal close.
func (k *kit) checkClose(t *testing.T) {
	k.t = t
	obs := k.dial("/")
	// The close of an earlier check's client can be noted to the
	// observer as soon as it is bound, before the bind's own reply.
	k.write(obs, websocket.TextMessage, []byte("cmd:bind:observer"))
	for i := 0; ; i++ {
		_, got := k.read(obs, 10*time.Second)
		if string(got) == "bound:observer" {
			break
		}
		var n closeNote
		if i == 50 || json.Unmarshal(got, &n) != nil || n.Event != "close" {
			t.Fatalf("observer bind: got %q", got)
		}
	}
	// note returns the next close note of a client bound to uid (the
	// clients of earlier checks close too, at their end).
	note := func(uid string) closeNote {
		t.Helper()
		for {
			_, b := k.read(obs, 10*time.Second)
			var n closeNote
			if err := json.Unmarshal(b, &n); err != nil {
				t.Fatalf("close note %q: %v", b, err)
			}
			if n.UID == uid {
				return n
			}
		}
	}

	ws := k.dial("/")
	if got := k.ask(ws, "cmd:bind:alice"); got != "bound:alice" {
		t.Fatalf("bind: got %q", got)
	}
	if got := k.ask(ws, "cmd:count"); got != "n=1" {
		t.Fatalf("count: got %q", got)
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = ws.Close()
	n := note("alice")
	if n.Event != "close" || n.Reason != "client_closed" || n.UID != "alice" || len(n.Groups) != 1 || n.Groups[0] != "kit" ||
		n.Session["n"] != float64(1) || len(n.Client) != 20 {
		t.Errorf("close note %+v: want client_closed, uid alice, groups [kit], session n=1, a client id", n)
	}

	ws2 := k.dial("/")
	if got := k.ask(ws2, "cmd:bind:bob"); got != "bound:bob" {
		t.Fatalf("bind: got %q", got)
	}
	k.write(ws2, websocket.TextMessage, []byte("cmd:close"))
	if _, got := k.read(ws2, 10*time.Second); string(got) != "bye" {
		t.Fatalf("final message %q, want bye", got)
	}
	_ = ws2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws2.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after the close action: %v, want a normal close", err)
	}
	if n := note("bob"); n.Reason != "close_requested" || len(n.Groups) != 1 || n.Session["n"] != float64(0) {
		t.Errorf("close note %+v: want close_requested, groups [kit], session n=0", n)
	}
}

// checkReject: ACTION_REJECT from the WebSocket connect event closes the
// client with 4000 + status.
func (k *kit) checkReject(t *testing.T) {
	k.t = t
	ws := k.dial("/reject")
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := ws.ReadMessage()
	if !websocket.IsCloseError(err, 4403) {
		t.Fatalf("rejected client: %v, want close code 4403", err)
	}
}

// checkUpgradeHook: on a listener with upgrade_hook, ACTION_REJECT of the
// WebSocket connect event (marked before_upgrade) answers the upgrade
// request with its HTTP status and reason as the body; any other answer
// accepts, with the event's actions applied (the uid bound) before the
// connect event (group kit, session n=0).
func (k *kit) checkUpgradeHook(t *testing.T) {
	k.t = t
	url := "ws://" + k.n.Addr("hook").String()
	ws, resp, err := websocket.DefaultDialer.Dial(url+"/reject", nil)
	if err == nil {
		_ = ws.Close()
		t.Fatal("upgrade of /reject accepted, want HTTP 403")
	}
	if resp == nil || resp.StatusCode != 403 {
		t.Fatalf("upgrade of /reject: %v, response %+v; want HTTP 403", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(body), "rejected by") {
		t.Errorf("403 body %q, want the reject reason", body)
	}
	ws, _, err = websocket.DefaultDialer.Dial(url+"/?uid=hooked", nil)
	if err != nil {
		t.Fatalf("upgrade with the hook: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	var st struct {
		UID     string         `json:"uid"`
		Groups  []string       `json:"groups"`
		Session map[string]any `json:"session"`
	}
	if err := json.Unmarshal([]byte(k.ask(ws, "cmd:state")), &st); err != nil {
		t.Fatal(err)
	}
	if st.UID != "hooked" || len(st.Groups) != 1 || st.Groups[0] != "kit" || st.Session["n"] != float64(0) {
		t.Errorf("state %+v: want uid hooked, groups [kit], session n=0", st)
	}
}

// checkProgress: a handler slower than the gateway's event timeout (2s
// here) is not redelivered: the implementation reports progress.
func (k *kit) checkProgress(t *testing.T) {
	k.t = t
	ws := k.dial("/")
	before := k.n.Gateway().Stats().Redelivered
	k.write(ws, websocket.TextMessage, []byte("cmd:slow:3500"))
	if _, got := k.read(ws, 15*time.Second); string(got) != "slow done attempt=1" {
		t.Fatalf("slow handler: got %q, want slow done attempt=1", got)
	}
	// A late final ack of the first attempt is accepted, so the answer
	// alone does not show a missing progress ack: the count does.
	if n := k.n.Gateway().Stats().Redelivered - before; n != 0 {
		t.Fatalf("%d batches redelivered during a 3.5s handler: no progress acks", n)
	}
	if got := k.ask(ws, "after"); got != "after" {
		t.Fatalf("after the slow handler: got %q", got)
	}
}

// checkKill: a batch in hand when the implementation is killed with
// SIGKILL is delivered again to its successor, and the client's later
// messages follow it in order. A bus worker's successor gets it from the
// gateway (attempt > 1); in webhook mode the hook's own retry may reach
// the new backend first, with the gateway's attempt still 1.
func (k *kit) checkKill(t *testing.T) {
	k.t = t
	ws := k.dial("/")
	k.write(ws, websocket.TextMessage, []byte("cmd:slow:2000"))
	k.write(ws, websocket.TextMessage, []byte("next"))
	time.Sleep(500 * time.Millisecond) // the batch is in the handler
	k.kill()
	k.startProc()
	_, got := k.read(ws, 30*time.Second)
	if !strings.HasPrefix(string(got), "slow done attempt=") || (!k.tg.webhook && string(got) == "slow done attempt=1") {
		t.Fatalf("after SIGKILL: got %q, want slow done (with attempt > 1 from a bus worker)", got)
	}
	if _, got = k.read(ws, 15*time.Second); string(got) != "next" {
		t.Fatalf("the next message: got %q", got)
	}
}

// checkDrain: on SIGTERM the implementation finishes the batch in hand and
// acknowledges it (no redelivery: attempt 1), then exits; its successor
// serves the client's next message.
func (k *kit) checkDrain(t *testing.T) {
	k.t = t
	ws := k.dial("/")
	k.write(ws, websocket.TextMessage, []byte("cmd:slow:1500"))
	time.Sleep(500 * time.Millisecond) // the batch is in the handler
	k.mu.Lock()
	p := k.proc
	k.proc = nil
	k.mu.Unlock()
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, got := k.read(ws, 10*time.Second); string(got) != "slow done attempt=1" {
		t.Fatalf("batch in hand at SIGTERM: got %q, want slow done attempt=1", got)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = p.Process.Kill()
		<-exited
		t.Fatal("still running 10s after SIGTERM")
	}
	k.startProc()
	if got := k.ask(ws, "after drain"); got != "after drain" {
		t.Fatalf("after the drain: got %q", got)
	}
}

// kitCodec is the codec of the kit's "codec" listener: a message "v:<s>"
// decodes to the string s (neutral form "<s>" as a JSON string); any
// other message is refused.
type kitCodec struct{}

// Encode returns "v:" and v's text.
func (kitCodec) Encode(v any) ([]byte, error) { return fmt.Appendf(nil, "v:%v", v), nil }

// Decode stores the text after "v:" in v (a *any).
func (kitCodec) Decode(data []byte, v any) error {
	rest, ok := bytes.CutPrefix(data, []byte("v:"))
	if !ok {
		return errors.New("kit codec: no v: prefix")
	}
	p, ok := v.(*any)
	if !ok {
		return fmt.Errorf("kit codec: decode into %T", v)
	}
	*p = string(rest)
	return nil
}

// checkCodec: on a listener with a codec, the app sees each message's
// decoded value (it answers "value:" and the value's JSON), and a
// message the codec refuses as a decode_error with the codec's error.
func (k *kit) checkCodec(t *testing.T) {
	k.t = t
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+k.n.Addr("codec").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if got := k.ask(ws, "v:hello"); got != `value:"hello"` {
		t.Errorf("a decoded message: answer %q, want %q", got, `value:"hello"`)
	}
	if got := k.ask(ws, "oops"); !strings.HasPrefix(got, "decode_error:") || !strings.Contains(got, "no v: prefix") {
		t.Errorf("a message the codec refuses: answer %q, want decode_error:<the codec's error>", got)
	}
	if got := k.ask(ws, "v:again"); got != `value:"again"` {
		t.Errorf("after the decode error: answer %q", got)
	}
}
