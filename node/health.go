package node

import (
	"encoding/json"
	"net/http"
)

// serveHealth answers /healthz: 200 {"status":"ok"} as long as the process
// serves HTTP at all (liveness). It needs no token.
func serveHealth(w http.ResponseWriter, r *http.Request) {
	if !healthMethod(w, r) {
		return
	}
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readiness is the body of /readyz.
type readiness struct {
	Status string `json:"status"` // "ready" or "not_ready"
	// NotReady names the checks that failed, in the order of Checks.
	NotReady []string `json:"not_ready,omitempty"`
	// Checks says the state of each check: "ok" or what is wrong.
	Checks map[string]string `json:"checks"`
}

// ready runs the readiness checks:
//
//	listeners  the gateway accepts clients (started, not shutting down);
//	           not checked in an API-only node (NoGateway)
//	bus        the gateway's bus connection (an API-only node: the API
//	           client's) is connected
//
// Workers are not a check: while none is up the gateway holds each
// client's events (bounded) and delivers them when one appears, so the
// node still serves clients correctly, and a load balancer that took the
// node out while its workers reload would turn a gap of seconds into
// refused clients. Stats().Parked (gatework_gateway_event_batches_parked)
// shows when events wait for a worker.
func (n *Node) ready() readiness {
	rd := readiness{Status: "ready", Checks: map[string]string{}}
	check := func(name string, ok bool, bad string) {
		if ok {
			rd.Checks[name] = "ok"
			return
		}
		rd.Checks[name] = bad
		rd.NotReady = append(rd.NotReady, name)
		rd.Status = "not_ready"
	}
	if !n.cfg.NoGateway {
		check("listeners", n.gw != nil && n.gw.Accepting(), "not accepting clients")
	}
	nc := n.busConn()
	check("bus", nc.IsConnected(), "bus connection "+nc.Status().String())
	return rd
}

// serveReady answers /readyz: 200 with {"status":"ready",…} when every
// readiness check passes, else 503 with {"status":"not_ready",
// "not_ready":[…],"checks":{…}}. It needs no token.
func (n *Node) serveReady(w http.ResponseWriter, r *http.Request) {
	if !healthMethod(w, r) {
		return
	}
	rd := n.ready()
	body, _ := json.Marshal(rd) // strings only: cannot fail
	if rd.Status != "ready" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(append(body, '\n'))
}

// healthMethod sets the common headers and refuses methods other than GET
// and HEAD; it reports whether to go on.
func healthMethod(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = w.Write([]byte(`{"status":"method not allowed"}` + "\n"))
		return false
	}
	return true
}
