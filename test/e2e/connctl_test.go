package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestConnControl drives PauseRecv, ResumeRecv, Confirm and SetBinary
// through the Go API and over HTTP against a node: a paused client's
// message is answered only after ResumeRecv, SetBinary turns text into
// binary frames, and every call on an unknown client is not_found (HTTP
// 404 with the usual error body).
func TestConnControl(t *testing.T) {
	cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
	unknown := cl.n.Gateway().ID() + "00000fffff"
	for _, via := range []string{"go", "http"} {
		t.Run(via, func(t *testing.T) {
			ctx := ctxFor(t, 20*time.Second)
			var a api.API = cl.n.API()
			if via == "http" {
				a = httpAPI{c: cl}
			}
			for _, proto := range []string{"ws", "tcp"} {
				c := cl.dial(t, proto)
				c.who()
				must(t, "PauseRecv", a.PauseRecv(ctx, c.id))
				c.send("/who")
				if f, err := c.recv(300 * time.Millisecond); err == nil {
					t.Fatalf("%s: a paused client was answered: %v", proto, f)
				}
				must(t, "ResumeRecv", a.ResumeRecv(ctx, c.id))
				var w testapp.Who
				if err := json.Unmarshal(c.next().data, &w); err != nil || w.Client != c.id {
					t.Fatalf("%s: after ResumeRecv: %+v, %v", proto, w, err)
				}
				must(t, "Confirm", a.Confirm(ctx, c.id)) // not a delay_receive listener: nothing to do
				must(t, "SetBinary", a.SetBinary(ctx, c.id, true))
				must(t, "SendToClient", a.SendToClient(ctx, c.id, []byte("text")))
				if f := c.next(); string(f.data) != "text" || f.binary != (proto == "ws") {
					t.Fatalf("%s: after SetBinary: %v", proto, f)
				}
				must(t, "SetBinary off", a.SetBinary(ctx, c.id, false))
				must(t, "SendToClient", a.SendToClient(ctx, c.id, []byte("text")))
				if f := c.next(); f.binary {
					t.Fatalf("%s: after SetBinary off: %v", proto, f)
				}
			}
			for name, call := range map[string]func(context.Context, string) error{
				"PauseRecv":  a.PauseRecv,
				"ResumeRecv": a.ResumeRecv,
				"Confirm":    a.Confirm,
				"SetBinary":  func(ctx context.Context, id string) error { return a.SetBinary(ctx, id, true) },
			} {
				if err := call(ctx, unknown); !errors.Is(err, api.ErrNotFound) {
					t.Errorf("%s(unknown client) = %v, want not found", name, err)
				}
			}
		})
	}
	ctx := ctxFor(t, 10*time.Second)
	for _, method := range []string{"pauseRecv", "resumeRecv", "confirm", "setBinary"} {
		r, err := cl.post(ctx, method, "", map[string]any{"client": unknown})
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || r.Status != http.StatusNotFound || body.Error.Code != "not_found" {
			t.Errorf("POST /api/%s unknown client: %d %s (%v)", method, r.Status, r.Body, err)
		}
	}
}
