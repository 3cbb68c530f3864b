package e2e

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/test/e2e/testapp"
)

// TestCloseWithMessage: closeClient with a final message and closeUid
// (imi's closeByFlag), called through the Go api.Client, the HTTP API and a
// handler's Context.API(): the final message arrives after everything
// queued before it, then the connection closes normally (1000); closeUid
// closes every connection of the uid and no other; force drops what was
// queued, not the final message.
func TestCloseWithMessage(t *testing.T) {
	for _, via := range []string{"go", "http", "handler"} {
		t.Run(via, func(t *testing.T) {
			cl := startCluster(t, clusterConfig{app: &testapp.Config{}})
			ctx := ctxFor(t, 30*time.Second)
			var a api.API = cl.n.API()
			if via == "http" {
				a = httpAPI{c: cl}
			}
			// driver runs handler-side calls over its own socket.
			driver := cl.dial(t, "ws")
			driver.who()
			closeClientWith := func(id, msg string) {
				t.Helper()
				if via == "handler" {
					driver.send("/closeclient " + id + " " + msg)
					return
				}
				must(t, "CloseClientWith "+id, a.CloseClientWith(ctx, id, false, []byte(msg)))
			}
			closeUID := func(uid, msg string) {
				t.Helper()
				if via == "handler" {
					driver.send("/closeuid " + uid + " " + msg)
					return
				}
				must(t, "CloseUID "+uid, a.CloseUID(ctx, uid, false, []byte(msg)))
			}

			c1, c2, c3, c4 := cl.dial(t, "ws"), cl.dial(t, "tcp"), cl.dial(t, "ws"), cl.dial(t, "ws")
			for _, c := range []*client{c1, c2, c3, c4} {
				c.who()
			}

			// Everything queued before, then the final message, then 1000.
			var queued []string
			for i := range 5 {
				m := fmt.Sprintf("q%d", i)
				queued = append(queued, m)
				must(t, "SendToClient c1", a.SendToClient(ctx, c1.id, []byte(m)))
			}
			closeClientWith(c1.id, "bye")
			checkClosed(t, c1, append(queued, "bye"), 1000)

			// closeUid: both connections of the uid, on two protocols; c4
			// (another uid) stays.
			must(t, "BindUID c2", a.BindUID(ctx, c2.id, "uz"))
			must(t, "BindUID c3", a.BindUID(ctx, c3.id, "uz"))
			must(t, "BindUID c4", a.BindUID(ctx, c4.id, "other"))
			closeUID("uz", "gone")
			checkClosed(t, c2, []string{"gone"}, 1000)
			checkClosed(t, c3, []string{"gone"}, 1000)
			if ok, err := a.IsOnline(ctx, c4.id); err != nil || !ok {
				t.Fatalf("IsOnline c4 (uid other) after closeUid uz = %v, %v", ok, err)
			}
			if via == "handler" {
				return
			}

			// force drops what is queued but still sends the final message.
			must(t, "CloseClientWith c4 force", a.CloseClientWith(ctx, c4.id, true, []byte("last")))
			f, msgs := c4.expectClosed()
			if len(msgs) != 1 || msgs[0] != "last" || f.code != 1000 {
				t.Fatalf("forced close with a final message: %v, messages %q; want code 1000 after \"last\"", f, msgs)
			}
			// A uid nobody has: nothing to do. An empty uid: refused.
			must(t, "CloseUID nobody", a.CloseUID(ctx, "nobody", true, nil))
			if err := a.CloseUID(ctx, "", false, nil); !errors.Is(err, api.ErrInvalidArgument) {
				t.Fatalf("CloseUID empty uid: %v, want ErrInvalidArgument", err)
			}
			if ok, err := a.IsOnline(ctx, driver.id); err != nil || !ok {
				t.Fatalf("IsOnline driver = %v, %v: the closes touched a bystander", ok, err)
			}
		})
	}
}
