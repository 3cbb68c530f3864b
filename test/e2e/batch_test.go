package e2e

import (
	"testing"
	"time"

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
