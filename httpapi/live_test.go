package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/gateway"
	"github.com/gatework/gatework/httpapi"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testwait"
)

// TestOpenAPILiveAnswers validates answers of a live cluster (a gateway on
// an embedded bus, the Go client, the handler) against the OpenAPI
// document: the batch calls, listener-scoped calls, structured sends and
// the unknown_listener error.
func TestOpenAPILiveAnswers(t *testing.T) {
	e, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	conn := func(name string) *bus.Options {
		o := e.ConnectOptions(name)
		return &o
	}
	// The client first, so that it hears the gateway's first heartbeat.
	a, err := api.Dial(*conn("api"), api.Config{QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	gnc, err := bus.Connect(*conn("gw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gnc.Close)
	gw, err := gateway.New(gnc, gateway.Config{
		Logger: slog.New(slog.DiscardHandler),
		Listeners: []gateway.ListenerConfig{{Name: "tcp", Protocol: "tcp", Addr: "127.0.0.1:0"},
			{Name: "dev", Protocol: "tcp", Addr: "127.0.0.1:0", Codec: "json"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	for _, l := range []string{"tcp", "dev"} {
		c, err := net.Dial("tcp", gw.Addr(l).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	ctx := context.Background()
	testwait.For(t, 10*time.Second, "the gateway and its clients", func() bool {
		n, err := a.GetClientCount(ctx)
		return err == nil && n.Value == 2 && len(a.Members()) == 1
	})
	ids, err := a.GetClientList(ctx, api.PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids.Items {
		if err := a.JoinGroup(ctx, id, "g"); err != nil {
			t.Fatal(err)
		}
		if err := a.BindUID(ctx, id, "u"); err != nil {
			t.Fatal(err)
		}
	}
	h, err := httpapi.New(a, httpapi.Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	doc := getJSON(t, h, "/api/openapi.json")
	v := validator{doc: doc}
	clients, _ := json.Marshal(ids.Items)
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"getAllClientSessions", `{"limit":1}`, 200},
		{"getAllClientSessions", `{"listener":"dev"}`, 200},
		{"getAllGroupClientIdCount", `{}`, 200},
		{"getAllGroupUidCount", `{"listeners":["tcp"]}`, 200},
		{"getAllGroupClientIdList", `{"limit":1}`, 200},
		{"isUidsOnline", `{"uids":["u","x"],"listener":"dev"}`, 200},
		{"getClientCountByGroups", `{"groups":["g"]}`, 200},
		{"getClientListByUids", `{"uids":["u"]}`, 200},
		{"getClientCount", `{"listener":"dev"}`, 200},
		{"sendToClients", fmt.Sprintf(`{"clients":%s,"data":{"k":[1]}}`, clients), 200},
		{"sendToAll", `{"data":"x","listener":"dev"}`, 200},
		{"getClientCount", `{"listener":"nope"}`, 400},
		{"sendToAll", `{"message":"x","listeners":["dev","nope"]}`, 400},
	} {
		w := do(h, http.MethodPost, "/api/"+tc.path, tc.body, map[string]string{"Content-Type": "application/json"})
		if w.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d: %s", tc.path, tc.body, w.Code, tc.status, w.Body)
			continue
		}
		var resp any
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		schema := dig(doc, "paths", "/api/"+tc.path, "post", "responses", "200", "content", "application/json", "schema")
		if tc.status != 200 {
			schema = dig(doc, "components", "schemas", "Error")
			if code := dig(resp, "error", "code"); code != httpapi.CodeUnknownListener {
				t.Errorf("%s %s: code %v, want %s", tc.path, tc.body, code, httpapi.CodeUnknownListener)
			}
		}
		if err := v.check(schema, resp, "response"); err != nil {
			t.Errorf("%s %s: answer %s: %v", tc.path, tc.body, w.Body, err)
		}
	}
}
