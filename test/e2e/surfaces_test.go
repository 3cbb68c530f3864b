package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/codec"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/worker"
)

// kvCodec is a toy codec of flat objects as "k=v;k=v" (keys sorted),
// counting its Encode calls.
type kvCodec struct{ encodes *atomic.Int64 }

func (k kvCodec) Encode(v any) ([]byte, error) {
	k.encodes.Add(1)
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("kv: want an object, got %T", v)
	}
	var parts []string
	for _, key := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%v", key, m[key]))
	}
	return []byte(strings.Join(parts, ";")), nil
}

func (kvCodec) Decode(data []byte, v any) error {
	out := map[string]any{}
	for _, kv := range strings.Split(string(data), ";") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("kv: %q is not key=value", kv)
		}
		out[k] = val
	}
	p, ok := v.(*any)
	if !ok {
		return fmt.Errorf("kv: decode into %T", v)
	}
	*p = out
	return nil
}

// runner runs functions inside a worker handler, on the API the handler's
// Context hands out: a client on a raw listener sends "run <key>", the
// handler calls the function registered under key with c.API() and
// answers "done <key>".
type runner struct {
	mu   sync.Mutex
	next int
	fns  map[string]func(api.API)
}

func (r *runner) add(fn func(api.API)) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	key := fmt.Sprint(r.next)
	r.fns[key] = fn
	return key
}

func (r *runner) take(key string) func(api.API) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn := r.fns[key]
	delete(r.fns, key)
	return fn
}

// start runs a worker.Worker on nc whose API has a short query timeout:
// it tells each client its id, does "join g" / "bind u" / "run k" on raw
// listeners, and on listeners with a codec echoes the decoded value with
// SendValue (answering "decode error: …" for a message that did not
// decode, decode_error: event).
func (r *runner) start(t *testing.T, nc *nats.Conn) {
	t.Helper()
	a, err := api.New(nc, api.Config{QueryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	w, err := worker.New(nc, a, worker.Config{Logger: testLogger(t)}, worker.Handlers{
		OnConnect: func(c *worker.Context) { c.Send([]byte(c.ClientID())) },
		OnMessage: func(c *worker.Context, m []byte) {
			if c.Codec() != "" {
				var v any
				if err := c.Decode(&v); err != nil {
					c.Send([]byte("decode failed in the worker: " + err.Error()))
					return
				}
				if err := c.SendValue(v); err != nil {
					c.Send([]byte(err.Error()))
				}
				return
			}
			if err := c.Decode(new(any)); !errors.Is(err, worker.ErrNoCodec) {
				c.Send([]byte(fmt.Sprintf("Decode on a raw listener: %v", err)))
			}
			verb, arg, _ := strings.Cut(string(m), " ")
			switch verb {
			case "join":
				c.JoinGroup(arg)
			case "bind":
				c.BindUID(arg)
			case "run":
				r.take(arg)(c.API())
				c.Send([]byte("done " + arg))
				return
			}
			c.Send([]byte("ok " + arg))
		},
		OnDecodeError: func(c *worker.Context, m []byte, err *worker.DecodeError) {
			c.Send([]byte("decode error: " + string(m)))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
	})
}

// dialOn connects to listener of gateway i and reads the client's id.
func (tr *trio) dialOn(t *testing.T, i int, listener string) *lineClient {
	t.Helper()
	c, err := net.Dial("tcp", tr.gws[i].Addr(listener).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	lc := &lineClient{t: t, c: c, r: bufio.NewReader(c)}
	lc.id = lc.read()
	return lc
}

// surface is one of the three places the API is offered.
type surface struct {
	name string
	do   func(fn func(a api.API)) // runs fn against the surface's API
}

// TestAPISurfaces drives the batch calls, listener scoping and structured
// sends through one table, against the Go api.Client, the HTTP API and a
// handler's Context.API(), on three gateways: answers, scoped answers,
// the bounds, codecs per listener, and partial answers once a gateway is
// gone.
func TestAPISurfaces(t *testing.T) {
	var encodes atomic.Int64
	line := func(name, cd, onErr string) gateway.ListenerConfig {
		return gateway.ListenerConfig{Name: name, Protocol: "tcp", Addr: "127.0.0.1:0", Codec: cd, DecodeError: onErr}
	}
	cfg := gateway.Config{
		Listeners: []gateway.ListenerConfig{line("tcp", "", ""), line("dev", codec.JSON, gateway.DecodeErrorEvent),
			line("kv", "kv", ""), line("strict", codec.JSON, "")},
		Codecs: map[string]codec.Codec{"kv": kvCodec{&encodes}},
		// Heartbeats (sent at start, then each interval) slow enough that
		// the gone gateway does not expire while the three surfaces ask.
		HeartbeatInterval: 10 * time.Second,
	}
	r := &runner{fns: map[string]func(api.API){}}
	// The Go and HTTP surfaces' client starts before the gateways, so that
	// it hears their first heartbeats (with their listener names).
	var quick *api.Client
	tr := startTrioWith(t, cfg, func(t *testing.T, nc *nats.Conn) {
		r.start(t, nc)
		var err error
		if quick, err = api.New(nc, api.Config{QueryTimeout: 300 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = quick.Close() })
	})
	ctx := ctxFor(t, 60*time.Second)
	srv := httptest.NewServer(mustHandler(t, quick))
	t.Cleanup(srv.Close)
	waitFor(t, 10*time.Second, "the client to know the gateways", func() bool { return len(quick.Members()) == 3 })

	cs0, drv, d0 := tr.dialOn(t, 0, "tcp"), tr.dialOn(t, 0, "tcp"), tr.dialOn(t, 0, "dev")
	cs1, k1 := tr.dialOn(t, 1, "tcp"), tr.dialOn(t, 1, "kv")
	cs2, cs3 := tr.dialOn(t, 2, "tcp"), tr.dialOn(t, 2, "tcp")
	a := tr.api
	for _, b := range []struct {
		c   *lineClient
		uid string
	}{{cs0, "u0"}, {cs1, "u0"}, {cs2, "u2"}, {cs3, "u2"}, {d0, "ud"}} {
		must(t, "bind", a.BindUID(ctx, b.c.id, b.uid))
	}
	for _, c := range []*lineClient{cs0, cs1, cs2, d0} {
		must(t, "join ga", a.JoinGroup(ctx, c.id, "ga"))
	}
	must(t, "join gc", a.JoinGroup(ctx, cs3.id, "gc"))
	must(t, "session", a.SetSession(ctx, cs0.id, api.Session{"n": "x"}))

	surfaces := []surface{
		{"go", func(fn func(api.API)) { fn(quick) }},
		{"http", func(fn func(api.API)) { fn(httpAPI{url: srv.URL}) }},
		{"handler", func(fn func(api.API)) {
			key := r.add(fn)
			drv.send("run " + key)
			drv.expect("done " + key)
		}},
	}
	ids := func(cs ...*lineClient) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.id
		}
		sort.Strings(out)
		return out
	}
	empty := api.Session{}
	allSessions := map[string]api.Session{cs0.id: {"n": "x"}, drv.id: empty, d0.id: empty, cs1.id: empty, k1.id: empty, cs2.id: empty, cs3.id: empty}

	type check struct {
		name    string
		run     func(a api.API) (any, api.Coverage, error)
		want    any
		missing bool // the answer is partial, missing gateway 2
	}
	run := func(t *testing.T, checks []check) {
		for _, sf := range surfaces {
			for _, c := range checks {
				var got any
				var cov api.Coverage
				var err error
				sf.do(func(a api.API) { got, cov, err = c.run(a) })
				if err != nil {
					t.Errorf("%s %s: %v", sf.name, c.name, err)
					continue
				}
				var missing []string
				if c.missing {
					missing = []string{tr.gws[2].ID()}
				}
				if fmt.Sprint(got) != fmt.Sprint(c.want) || cov.Partial != c.missing || !slices.Equal(cov.Missing, missing) {
					t.Errorf("%s %s = %v, %+v\nwant %v, missing %v", sf.name, c.name, got, cov, c.want, missing)
				}
			}
		}
	}
	online := func(uids ...string) func(api.API) (any, api.Coverage, error) {
		return func(a api.API) (any, api.Coverage, error) {
			b, err := a.IsUIDsOnline(ctx, uids)
			return b.Values, b.Coverage, err
		}
	}
	countsBy := func(groups ...string) func(api.API) (any, api.Coverage, error) {
		return func(a api.API) (any, api.Coverage, error) {
			c, err := a.GetClientCountByGroups(ctx, groups)
			return c.Values, c.Coverage, err
		}
	}
	listsBy := func(uids ...string) func(api.API) (any, api.Coverage, error) {
		return func(a api.API) (any, api.Coverage, error) {
			l, err := a.GetClientListByUIDs(ctx, uids)
			return l.Values, l.Coverage, err
		}
	}
	groupCounts := func(a api.API) (any, api.Coverage, error) {
		g, err := a.GetAllGroupClientIDCount(ctx)
		return fmt.Sprint(g.Values, g.Truncated), g.Coverage, err
	}
	groupUIDs := func(a api.API) (any, api.Coverage, error) {
		g, err := a.GetAllGroupUIDCount(ctx)
		return fmt.Sprint(g.Values, g.Truncated), g.Coverage, err
	}
	// Walk every page (limit per page), and say how many pages it took.
	sessions := func(limit int) func(api.API) (any, api.Coverage, error) {
		return func(a api.API) (any, api.Coverage, error) {
			all, pages, cur := map[string]api.Session{}, 0, ""
			var cov api.Coverage
			for {
				p, err := a.GetAllClientSessions(ctx, api.PageRequest{Cursor: cur, Limit: limit})
				if err != nil {
					return nil, cov, err
				}
				pages++
				maps.Copy(all, p.Sessions)
				cov.Partial, cov.Missing = cov.Partial || p.Partial, p.Missing
				if cur = p.NextCursor; cur == "" {
					return fmt.Sprint(all, " pages ", pages), cov, nil
				}
			}
		}
	}
	groupLists := func(limit int) func(api.API) (any, api.Coverage, error) {
		return func(a api.API) (any, api.Coverage, error) {
			all, pages, cur := map[string][]string{}, 0, ""
			var cov api.Coverage
			for {
				p, err := a.GetAllGroupClientIDList(ctx, api.PageRequest{Cursor: cur, Limit: limit})
				if err != nil {
					return nil, cov, err
				}
				pages++
				maps.Copy(all, p.Values)
				cov.Partial, cov.Missing = cov.Partial || p.Partial, p.Missing
				if cur = p.NextCursor; cur == "" {
					return fmt.Sprint(all, " pages ", pages), cov, nil
				}
			}
		}
	}
	dev := func(f func(api.API) (any, api.Coverage, error)) func(api.API) (any, api.Coverage, error) {
		return func(a api.API) (any, api.Coverage, error) { return f(a.OnListeners("dev")) }
	}
	count := func(a api.API) (any, api.Coverage, error) {
		c, err := a.GetClientCount(ctx)
		return c.Value, c.Coverage, err
	}

	t.Run("answers", func(t *testing.T) {
		run(t, []check{
			{"isUidsOnline", online("u0", "u2", "nobody", "u0"), map[string]bool{"nobody": false, "u0": true, "u2": true}, false},
			{"getClientCountByGroups", countsBy("ga", "gc", "none"), map[string]int{"ga": 4, "gc": 1, "none": 0}, false},
			{"getClientListByUids", listsBy("u2", "u0", "none"), map[string][]string{"none": {}, "u0": ids(cs0, cs1), "u2": ids(cs2, cs3)}, false},
			{"getAllGroupClientIdCount", groupCounts, fmt.Sprint(map[string]int{"ga": 4, "gc": 1}, false), false},
			// u0 is on gateways 0 and 1 and counts once.
			{"getAllGroupUidCount", groupUIDs, fmt.Sprint(map[string]int{"ga": 3, "gc": 1}, false), false},
			{"getAllClientSessions", sessions(3), fmt.Sprint(allSessions, " pages ", 3), false},
			{"getAllGroupClientIdList", groupLists(1), fmt.Sprint(map[string][]string{"ga": ids(cs0, cs1, cs2, d0), "gc": ids(cs3)}, " pages ", 2), false},
			// Scoped to the "dev" listener: only d0.
			{"scoped getClientCount", dev(count), 1, false},
			{"scoped isUidsOnline", dev(online("u0", "ud")), map[string]bool{"u0": false, "ud": true}, false},
			{"scoped getClientCountByGroups", dev(countsBy("ga")), map[string]int{"ga": 1}, false},
			{"scoped getClientListByUids", dev(listsBy("ud", "u0")), map[string][]string{"ud": {d0.id}, "u0": {}}, false},
			{"scoped getAllGroupClientIdCount", dev(groupCounts), fmt.Sprint(map[string]int{"ga": 1}, false), false},
			{"scoped getAllGroupUidCount", dev(groupUIDs), fmt.Sprint(map[string]int{"ga": 1}, false), false},
			{"scoped getAllClientSessions", dev(sessions(0)), fmt.Sprint(map[string]api.Session{d0.id: empty}, " pages ", 1), false},
			{"scoped getAllGroupClientIdList", dev(groupLists(0)), fmt.Sprint(map[string][]string{"ga": {d0.id}}, " pages ", 1), false},
			{"scoped isOnline, other listener", dev(func(a api.API) (any, api.Coverage, error) {
				ok, err := a.IsOnline(ctx, cs0.id)
				return ok, api.Coverage{}, err
			}), false, false},
			{"scoped isOnline, its listener", dev(func(a api.API) (any, api.Coverage, error) {
				ok, err := a.IsOnline(ctx, d0.id)
				return ok, api.Coverage{}, err
			}), true, false},
			{"scoped to two listeners", func(a api.API) (any, api.Coverage, error) { return count(a.OnListeners("dev", "kv")) }, 2, false},
		})
	})

	t.Run("bounds and unknown listeners", func(t *testing.T) {
		tooMany := make([]string, api.MaxBatchNames+1)
		for i := range tooMany {
			tooMany[i] = fmt.Sprint("n", i)
		}
		for _, sf := range surfaces {
			for _, tc := range []struct {
				name string
				call func(a api.API) error
				want error
			}{
				{"isUidsOnline too many", func(a api.API) error { _, err := a.IsUIDsOnline(ctx, tooMany); return err }, api.ErrInvalidArgument},
				{"getClientListByUids too many", func(a api.API) error { _, err := a.GetClientListByUIDs(ctx, tooMany); return err }, api.ErrInvalidArgument},
				{"getClientCountByGroups too many", func(a api.API) error { _, err := a.GetClientCountByGroups(ctx, tooMany); return err }, api.ErrInvalidArgument},
				{"isUidsOnline empty uid", func(a api.API) error { _, err := a.IsUIDsOnline(ctx, []string{"u0", ""}); return err }, api.ErrInvalidArgument},
				{"sendToClients too many", func(a api.API) error { return a.SendToClients(ctx, tooMany, []byte("x")) }, api.ErrInvalidArgument},
				{"sendToClients malformed", func(a api.API) error { return a.SendToClients(ctx, []string{cs0.id, "nope"}, []byte("x")) }, api.ErrInvalidClient},
				{"send value too many", func(a api.API) error { return a.SendValue(ctx, api.Target{Clients: tooMany}, 1) }, api.ErrInvalidArgument},
				{"scoped getSession, other listener", func(a api.API) error { _, err := a.OnListeners("dev").GetSession(ctx, cs0.id); return err }, api.ErrNotFound},
				{"unknown listener count", func(a api.API) error { _, err := a.OnListeners("nope").GetClientCount(ctx); return err }, api.ErrUnknownListener},
				{"unknown listener send", func(a api.API) error { return a.OnListeners("dev", "nope").SendToAll(ctx, []byte("x")) }, api.ErrUnknownListener},
				{"unknown listener batch", func(a api.API) error { _, err := a.OnListeners("nope").GetAllGroupUIDCount(ctx); return err }, api.ErrUnknownListener},
			} {
				var err error
				sf.do(func(a api.API) { err = tc.call(a) })
				if !errors.Is(err, tc.want) {
					t.Errorf("%s %s: %v, want %v", sf.name, tc.name, err, tc.want)
				}
			}
		}
		// Nothing of the refused calls reached cs0.
		must(t, "marker", a.SendToClient(ctx, cs0.id, []byte("mark")))
		cs0.expect("mark")
	})

	t.Run("sends", func(t *testing.T) {
		for _, sf := range surfaces {
			msg := "to-dev-" + sf.name
			sf.do(func(a api.API) {
				must(t, sf.name+" scoped sendToClients", a.OnListeners("dev").SendToClients(ctx, []string{cs0.id, d0.id, cs2.id}, []byte(msg)))
			})
			d0.expect(msg)
			// cs0 and cs2 are on the tcp listener: they got nothing.
			for _, c := range []*lineClient{cs0, cs2} {
				must(t, "marker", a.SendToClient(ctx, c.id, []byte("mark")))
				c.expect("mark")
			}
			// A value: JSON on the raw and json listeners, kv on kv; the kv
			// codec runs once for the send, whatever the recipients.
			before := encodes.Load()
			sf.do(func(a api.API) {
				must(t, sf.name+" SendValue group", a.SendValue(ctx, api.Target{Groups: []string{"ga"}}, map[string]any{"a": "1", "b": sf.name}))
			})
			want := fmt.Sprintf(`{"a":"1","b":"%s"}`, sf.name)
			for _, c := range []*lineClient{cs0, cs1, cs2, d0} {
				c.expect(want)
			}
			must(t, "join kv", a.JoinGroup(ctx, k1.id, "gk"))
			must(t, "join tcp", a.JoinGroup(ctx, cs1.id, "gk"))
			sf.do(func(a api.API) {
				must(t, sf.name+" SendValue all", a.SendValue(ctx, api.Target{All: true, Without: []string{drv.id, cs0.id, cs2.id, cs3.id, d0.id}}, map[string]any{"k": sf.name}))
			})
			k1.expect("k=" + sf.name)
			cs1.expect(fmt.Sprintf(`{"k":"%s"}`, sf.name))
			if n := encodes.Load() - before; n != 1 {
				t.Errorf("%s: the kv codec encoded %d times for one send, want 1", sf.name, n)
			}
		}
	})

	t.Run("decode", func(t *testing.T) {
		// kv in, the decoded value back out through the codec.
		k1.send("x=1;y=2")
		k1.expect("x=1;y=2")
		// json listener: a value round trip, and decode_error: event.
		d0.send(`{"z":[1,2]}`)
		d0.expect(`{"z":[1,2]}`)
		d0.send(`not json`)
		d0.expect("decode error: not json")
		// decode_error close (the default): the connection closes.
		st := tr.dialOn(t, 1, "strict")
		st.send(`{"ok":true}`)
		st.expect(`{"ok":true}`)
		st.send(`{broken`)
		_ = st.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := st.r.ReadString('\n'); err == nil {
			t.Fatalf("strict listener: got %q after a message that does not decode, want the connection closed", line)
		}
	})

	t.Run("gateway gone", func(t *testing.T) {
		tr.ncs[2].Close()
		run(t, []check{
			{"isUidsOnline", online("u0", "u2"), map[string]bool{"u0": true, "u2": false}, true},
			{"getClientCountByGroups", countsBy("ga", "gc"), map[string]int{"ga": 3, "gc": 0}, true},
			{"getClientListByUids", listsBy("u0", "u2"), map[string][]string{"u0": ids(cs0, cs1), "u2": {}}, true},
			{"getAllGroupClientIdCount", groupCounts, fmt.Sprint(map[string]int{"ga": 3, "gk": 2}, false), true},
			{"getAllGroupUidCount", groupUIDs, fmt.Sprint(map[string]int{"ga": 2, "gk": 1}, false), true},
			{"getAllGroupClientIdList", groupLists(0), fmt.Sprint(map[string][]string{"ga": ids(cs0, cs1, d0), "gk": ids(cs1, k1)}, " pages ", 1), true},
		})
	})
}

// mustHandler is the HTTP API of a, without a token (tests on 127.0.0.1).
func mustHandler(t *testing.T, a api.API) *httpapi.Handler {
	t.Helper()
	h, err := httpapi.New(a, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}
