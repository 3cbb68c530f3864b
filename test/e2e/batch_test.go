package e2e

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/internal/clientid"
)

// TestSendToClientsOneMessagePerGateway: sendToClients to 1,000 client ids
// spread over 3 gateways costs 3 bus messages (one per gateway), not
// 1,000, and each listed client that is connected gets the message once,
// even when listed twice.
func TestSendToClientsOneMessagePerGateway(t *testing.T) {
	tr := startTrio(t, gateway.Config{})
	ctx := ctxFor(t, 30*time.Second)
	real := []*lineClient{tr.dial(t, 0), tr.dial(t, 1), tr.dial(t, 2)}
	var ids []string
	for _, c := range real {
		ids = append(ids, c.id, c.id) // listed twice: delivered once
	}
	for i := range 1000 - len(ids) {
		// Ids of no open connection, on each gateway: skipped there.
		ids = append(ids, clientid.Make(tr.gws[i%3].ID(), uint64(1_000_000+i)))
	}
	before := tr.received()
	must(t, "SendToClients", tr.api.SendToClients(ctx, ids, []byte("hello")))
	for _, c := range real {
		c.expect("hello")
	}
	// Every gateway has handled the send (its client got it); nothing else
	// was published to them.
	after := tr.received()
	for i := range after {
		if d := after[i] - before[i]; d != 1 {
			t.Errorf("gateway %d received %d bus messages for one sendToClients, want 1 (all: %v -> %v)", i, d, before, after)
		}
	}
	// Once each: a marker sent next arrives right after the single copy.
	for _, c := range real {
		must(t, "SendToClient marker", tr.api.SendToClient(ctx, c.id, []byte("mark")))
		c.expect("mark")
	}
}

// TestBatchQueries: isUidsOnline, getClientCountByGroups and
// getClientListByUids answer every
// name asked for in one query round across three gateways; with a gateway
// gone silent they answer what the others said, partial, naming it; the
// inputs are bounded.
func TestBatchQueries(t *testing.T) {
	tr := startTrio(t, gateway.Config{})
	ctx := ctxFor(t, 30*time.Second)
	a := tr.api
	cs := []*lineClient{tr.dial(t, 0), tr.dial(t, 1), tr.dial(t, 2), tr.dial(t, 2)}
	must(t, "bind 0", a.BindUID(ctx, cs[0].id, "u0"))
	must(t, "bind 2", a.BindUID(ctx, cs[2].id, "u2"))
	must(t, "bind 3", a.BindUID(ctx, cs[3].id, "u2"))
	must(t, "join 0", a.JoinGroup(ctx, cs[0].id, "ga"))
	must(t, "join 1", a.JoinGroup(ctx, cs[1].id, "ga"))
	must(t, "join 2", a.JoinGroup(ctx, cs[2].id, "ga"))
	must(t, "join 3", a.JoinGroup(ctx, cs[3].id, "gc"))
	waitFor(t, 10*time.Second, "the three gateways to be known", func() bool { return len(a.Members()) == 3 })

	type check struct {
		name    string
		run     func() (any, api.Coverage, error)
		want    any
		missing []string
	}
	lists := func(uids ...string) func() (any, api.Coverage, error) {
		return func() (any, api.Coverage, error) {
			l, err := a.GetClientListByUIDs(ctx, uids)
			return l.Values, l.Coverage, err
		}
	}
	u2 := []string{cs[2].id, cs[3].id}
	slices.Sort(u2)
	online := func(uids ...string) func() (any, api.Coverage, error) {
		return func() (any, api.Coverage, error) {
			b, err := a.IsUIDsOnline(ctx, uids)
			return b.Values, b.Coverage, err
		}
	}
	counts := func(groups ...string) func() (any, api.Coverage, error) {
		return func() (any, api.Coverage, error) {
			c, err := a.GetClientCountByGroups(ctx, groups)
			return c.Values, c.Coverage, err
		}
	}
	run := func(checks []check) {
		t.Helper()
		for _, c := range checks {
			got, cov, err := c.run()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) || cov.Partial != (len(c.missing) > 0) || !slices.Equal(cov.Missing, c.missing) {
				t.Errorf("%s = %v, %+v; want %v, missing %v", c.name, got, cov, c.want, c.missing)
			}
		}
	}
	run([]check{
		{"isUidsOnline", online("u0", "u2", "nobody", "u0"), map[string]bool{"nobody": false, "u0": true, "u2": true}, nil},
		{"isUidsOnline none", online("x", "y"), map[string]bool{"x": false, "y": false}, nil},
		{"getClientCountByGroups", counts("ga", "gc", "none"), map[string]int{"ga": 3, "gc": 1, "none": 0}, nil},
		{"getClientListByUids", lists("u2", "u0", "none"), map[string][]string{"none": {}, "u0": {cs[0].id}, "u2": u2}, nil},
	})

	// Bounds and bad input: refused before touching the bus.
	tooMany := make([]string, api.MaxBatchNames+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint("n", i)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"isUidsOnline too many", func() error { _, err := a.IsUIDsOnline(ctx, tooMany); return err }(), api.ErrInvalidArgument},
		{"isUidsOnline empty", func() error { _, err := a.IsUIDsOnline(ctx, nil); return err }(), api.ErrInvalidArgument},
		{"isUidsOnline empty uid", func() error { _, err := a.IsUIDsOnline(ctx, []string{"u0", ""}); return err }(), api.ErrInvalidArgument},
		{"getClientListByUids too many", func() error { _, err := a.GetClientListByUIDs(ctx, tooMany); return err }(), api.ErrInvalidArgument},
		{"getClientCountByGroups too many", func() error { _, err := a.GetClientCountByGroups(ctx, tooMany); return err }(), api.ErrInvalidArgument},
		{"sendToClients too many", a.SendToClients(ctx, tooMany, []byte("x")), api.ErrInvalidArgument},
		{"sendToClients malformed", a.SendToClients(ctx, []string{cs[0].id, "nope"}, []byte("x")), api.ErrInvalidClient},
		{"sendToClients none", a.SendToClients(ctx, nil, []byte("x")), api.ErrInvalidArgument},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	// The malformed id stopped the whole call: cs[0] got nothing.
	must(t, "marker", a.SendToClient(ctx, cs[0].id, []byte("mark")))
	cs[0].expect("mark")

	// Gateway 2 goes silent (its bus connection drops; its heartbeats are
	// not overdue yet): answers come from the others, partial, naming it.
	quick, err := api.New(tr.conn(t, "api-quick"), api.Config{QueryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = quick.Close() })
	waitFor(t, 10*time.Second, "the quick client to know the gateways", func() bool { return len(quick.Members()) == 3 })
	a = quick
	tr.ncs[2].Close()
	gone := []string{tr.gws[2].ID()}
	run([]check{
		{"isUidsOnline gateway gone", online("u0", "u2"), map[string]bool{"u0": true, "u2": false}, gone},
		{"getClientCountByGroups gateway gone", counts("ga", "gc"), map[string]int{"ga": 2, "gc": 0}, gone},
		{"getClientListByUids gateway gone", lists("u0", "u2"), map[string][]string{"u0": {cs[0].id}, "u2": {}}, gone},
	})
}
