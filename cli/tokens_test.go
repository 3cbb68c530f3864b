package cli_test

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/gatework/gatework/httpapi"
)

func TestHTTPTokens(t *testing.T) {
	const good = `http:
  token: legacy-1
  tokens:
    - {name: ops, token: ops-secret-1, scope: admin}
    - {name: pusher, token: push-secret-1, scope: send}
    - {name: dash, token: dash-secret-1}
    - {name: prom, token: prom-secret-1, scope: metrics}
`
	c, err := load(t, good, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	nc, err := c.NodeConfig(slog.New(slog.DiscardHandler), apps...)
	if err != nil {
		t.Fatal(err)
	}
	want := []httpapi.Token{
		{Name: "ops", Token: "ops-secret-1", Scope: httpapi.ScopeAdmin},
		{Name: "pusher", Token: "push-secret-1", Scope: httpapi.ScopeSend},
		{Name: "dash", Token: "dash-secret-1", Scope: httpapi.ScopeRead}, // "" means read
		{Name: "prom", Token: "prom-secret-1", Scope: httpapi.ScopeMetrics},
	}
	if len(nc.HTTP.Tokens) != len(want) || nc.HTTP.Token != "legacy-1" {
		t.Fatalf("node tokens %+v", nc.HTTP.Tokens)
	}
	for i := range want {
		if nc.HTTP.Tokens[i] != want[i] {
			t.Errorf("token %d: %+v, want %+v", i, nc.HTTP.Tokens[i], want[i])
		}
	}
	// `gatework config` prints c.Effective().Masked(): no secret, the
	// names and scopes kept, c itself untouched.
	out, err := c.Effective().Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"legacy-1", "ops-secret-1", "push-secret-1", "dash-secret-1", "prom-secret-1"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("config shows a secret:\n%s", out)
		}
	}
	if !strings.Contains(string(out), "name: pusher") || strings.Count(string(out), "*****") != 5 {
		t.Errorf("masked config:\n%s", out)
	}
	if c.HTTP.Tokens[0].Token != "ops-secret-1" {
		t.Error("Masked changed the original")
	}

	bad := []struct {
		name, yaml string
		want       []string
	}{
		{"no name", "http:\n  tokens:\n    - {token: a-1}\n",
			[]string{"gatework.yaml:3: http.tokens[0].name: required"}},
		{"no secret", "http:\n  tokens:\n    - name: a\n",
			[]string{"gatework.yaml:3: http.tokens[0].token: required"}},
		{"bad scope", "http:\n  tokens:\n    - name: a\n      token: a-1\n      scope: root\n",
			[]string{`gatework.yaml:5: http.tokens[0].scope: "root" is not a scope: want metrics, read, send or admin`}},
		{"white space", "http:\n  tokens:\n    - name: a\n      token: a 1\n",
			[]string{"gatework.yaml:4: http.tokens[0].token: contains white space or control characters"}},
		{"name twice", "http:\n  tokens:\n    - {name: a, token: a-1}\n    - {name: a, token: a-2}\n",
			[]string{`gatework.yaml:4: http.tokens[1].name: "a" is also the name of http.tokens[0]`}},
		{"secret twice", "http:\n  tokens:\n    - {name: a, token: same-1}\n    - {name: b, token: same-1}\n",
			[]string{"gatework.yaml:4: http.tokens[1].token: the same secret as http.tokens[0]: each token needs its own"}},
		{"secret of http.token", "http:\n  token: same-1\n  tokens:\n    - {name: a, token: same-1}\n",
			[]string{"gatework.yaml:4: http.tokens[0].token: the same secret as http.token: each token needs its own"}},
		{"name of http.token", "http:\n  token: t-1\n  tokens:\n    - {name: token, token: t-2}\n",
			[]string{`gatework.yaml:4: http.tokens[0].name: "token" is the name of http.token: choose another`}},
		{"unknown key", "http:\n  tokens:\n    - {name: a, token: a-1, scopes: read}\n",
			[]string{"gatework.yaml:3: http.tokens[0].scopes: unknown key (did you mean http.tokens[0].scope?)"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml, nil)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			for _, secret := range []string{"a-1", "a 1", "same-1"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}
