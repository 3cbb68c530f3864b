package node_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/node"
)

// TestRoleParts starts a node with a gateway and an in-process worker on
// an embedded NATS, then on the same bus an API-only node and a gateway
// whose HTTP server serves /healthz only: each serves what its role holds.
func TestRoleParts(t *testing.T) {
	const user, pass = "roles", "roles-pw" // an extra full-access bus user
	full := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.Listen, c.NATS.User, c.NATS.Password = "127.0.0.1:0", user, pass
	})
	url := full.NATSURL()
	apiOnly := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.URL, c.NoGateway, c.Worker.Handlers = url, true, nil
		c.NATS.User, c.NATS.Password = user, pass
	})
	healthOnly := startNode(t, echo.Handlers(), func(c *node.Config) {
		c.NATS.URL, c.HTTP.HealthOnly, c.Worker.Handlers = url, true, nil
		c.NATS.User, c.NATS.Password = user, pass
	})
	if apiOnly.Gateway() != nil || apiOnly.Addr("ws") != nil || apiOnly.BusStatus() != "CONNECTED" {
		t.Errorf("API-only node: gateway %v, ws %v, bus %s", apiOnly.Gateway(), apiOnly.Addr("ws"), apiOnly.BusStatus())
	}
	if healthOnly.Gateway() == nil || healthOnly.Addr("ws") == nil {
		t.Error("health-only node has no gateway")
	}
	ws := dialWS(t, healthOnly) // a client of the second gateway
	defer ws.Close()
	post := func(n *node.Node, path string) (int, string) {
		t.Helper()
		resp, err := http.Post("http://"+n.HTTPAddr().String()+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(n *node.Node, path string) int {
		t.Helper()
		resp, err := http.Get("http://" + n.HTTPAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code, body := post(apiOnly, "/api/getClientCount"); code != 200 || !strings.Contains(body, `"result":1,"partial":false`) {
		t.Errorf("API-only node getClientCount: %d %s", code, body)
	}
	if code, _ := post(healthOnly, "/api/getClientCount"); code != http.StatusNotFound {
		t.Errorf("health-only node serves the API: %d", code)
	}
	for name, n := range map[string]*node.Node{"api-only": apiOnly, "health-only": healthOnly} {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if code := get(n, path); code != 200 {
				t.Errorf("%s %s: %d", name, path, code)
			}
		}
	}
}
