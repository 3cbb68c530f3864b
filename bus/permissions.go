package bus

import (
	"fmt"
	"slices"
	"strings"
)

// Role is what a bus user does; Permissions says what each may publish
// and subscribe to. Each role has its own inbox prefix (Subjects.Inbox).
type Role string

// The roles of bus users.
const (
	// RoleGateway holds client connections: it publishes events and
	// heartbeats, receives commands, sends, queries, acks and
	// heartbeats, and answers requests (NATS allow_responses: one reply
	// per request received, within two minutes). It reads every client's
	// traffic: give its credentials to gateways only.
	RoleGateway Role = "gateway"
	// RoleWorker serves events: it receives them only inside the queue
	// group Subjects.WorkersQueue, acknowledges them, and does what
	// RoleAPI does. Workers are trusted business code: they may act on
	// any client of the cluster through the API (send, close, bind, set
	// sessions, query), submit and take tasks (the latter only inside
	// the queue group Subjects.TaskQueue), answer tasks in any role's
	// inbox below ".task.", and message other workers; but they cannot
	// read what the bus carries to gateways or to other roles' inboxes,
	// nor events or tasks outside their queue groups, nor pose as a
	// gateway.
	RoleWorker Role = "worker"
	// RoleAPI calls the API (gatework api, the Go package api, the HTTP
	// API of a node that runs no gateway): it publishes commands, sends,
	// queries and tasks and reads its replies (task results included)
	// and the heartbeats. It cannot take tasks nor talk to workers.
	RoleAPI Role = "api"
	// RoleNode is a node doing every job at once (gatework start on an
	// external NATS, and the worker processes of its master, which use the
	// node's credentials): the union of the three other roles, with its
	// own inbox prefix.
	RoleNode Role = "node"
)

// Roles lists every role, in the order of the documentation.
var Roles = []Role{RoleGateway, RoleWorker, RoleAPI, RoleNode}

// Rules is what one role may do on the bus: allow lists of subjects
// (anything not listed is denied, wildcard subscriptions included).
type Rules struct {
	// Publish lists the subjects the role may publish to.
	Publish []string
	// Subscribe lists the subjects the role may subscribe to; an entry
	// "subject queue" allows the subscription inside that queue group only.
	Subscribe []string
	// Responses allows replying to the requests received (NATS
	// allow_responses with nats-server's defaults: one reply per request,
	// within two minutes), whatever their reply subject.
	Responses bool
}

// Permissions returns what role may do on the bus of s: allow lists
// (anything not listed is denied, wildcard subscriptions included) that
// give each role what its code uses and nothing more. It returns nil for
// an unknown role. The embedded server (internal/natsembed) gives them to its users;
// AuthorizationConfig writes them for an external nats-server.
func Permissions(s Subjects, role Role) *Rules {
	p := s.Prefix
	var (
		// What calling the API publishes: commands to one gateway,
		// broadcasts, routed sends, queries.
		apiPub = []string{p + ".gw.*.cmd", s.Broadcast(), s.AllGroups(), s.AllUIDs(), s.Query()}
		ack    = p + ".gw.*.ack.*"
		// The events subject, in the workers' queue group only: a
		// subscription outside it would copy every client message.
		eventsQueue = s.Events() + " " + s.WorkersQueue()
		// Multi batches (EventBatches), in the same queue group; their
		// acks go to the gateway's ack subjects like the others.
		multiQueue = s.EventsMulti() + " " + s.WorkersQueue()
		// Uid gates (dispatch by uid): gateway to gateway only.
		uidGate = p + ".gw.*.uidgate"
		gwSub   = []string{p + ".gw.*.cmd", ack, s.Broadcast(), s.Query(), s.AllGroups(), s.AllUIDs(), s.Heartbeat(), uidGate}
		// Tasks: taken only inside the task workers' queue group (a
		// subscription outside it would copy every task); the results go
		// to the submitters' inboxes, below ".task." only.
		taskQueue = s.Tasks() + " " + s.TaskQueue()
		// Worker messages and announcements: among workers only.
		wkPub     = []string{s.AllTaskReplies(), s.WorkerAnnounce(), s.AllWorkerInboxes(), s.WorkerBroadcast()}
		wkSub     = []string{taskQueue, s.WorkerAnnounce(), s.AllWorkerInboxes(), s.WorkerBroadcast()}
		pub, sub  []string
		responses bool
	)
	switch role {
	case RoleGateway:
		pub = []string{s.Events(), s.EventsMulti(), s.Heartbeat(), s.DeadLetter(), uidGate}
		// The workers' announcements: whether any has a close handler.
		sub = append(slices.Clone(gwSub), s.WorkerAnnounce(), s.Inbox(role)+".>")
		responses = true
	case RoleWorker:
		pub = append(append(apiPub, s.Tasks(), ack), wkPub...)
		// Dead letters carry events, which workers see anyway.
		sub = append([]string{eventsQueue, multiQueue, s.Heartbeat(), s.DeadLetter(), s.Inbox(role) + ".>"}, wkSub...)
	case RoleAPI:
		pub = append(apiPub, s.Tasks())
		sub = []string{s.Heartbeat(), s.Inbox(role) + ".>"}
	case RoleNode:
		pub = append([]string{s.Events(), s.EventsMulti(), s.Heartbeat(), s.DeadLetter(), uidGate}, append(append(apiPub, s.Tasks(), ack), wkPub...)...)
		sub = append(append(slices.Clone(gwSub), eventsQueue, multiQueue, s.DeadLetter(), s.Inbox(role)+".>"), wkSub...)
		responses = true
	default:
		return nil
	}
	return &Rules{Publish: pub, Subscribe: sub, Responses: responses}
}

// UserName is the user name AuthorizationConfig gives role:
// "gatework-" followed by the role.
func UserName(role Role) string { return "gatework-" + string(role) }

// PasswordVar is the environment variable AuthorizationConfig reads the
// password of role from: GATEWORK_BUS_<ROLE>_PASSWORD.
func PasswordVar(role Role) string {
	return "GATEWORK_BUS_" + strings.ToUpper(string(role)) + "_PASSWORD"
}

// AuthorizationConfig returns the authorization block of a nats-server
// configuration file that gives each role its Permissions on the bus of
// s: one user per role, named UserName(role), whose password the server
// reads from the environment variable PasswordVar(role) when it loads
// the file. docs/security.md shows it for the default prefix.
func AuthorizationConfig(s Subjects) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, role := range Roles {
		p := Permissions(s, role)
		fmt.Fprintf(&b, "    # %s: inbox prefix %s\n", role, s.Inbox(role))
		fmt.Fprintf(&b, "    {\n      user: %q\n      password: $%s\n      permissions: {\n", UserName(role), PasswordVar(role))
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", quoteList(p.Publish))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(p.Subscribe))
		if p.Responses {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// quoteList writes subjects as a configuration-file array of quoted
// strings.
func quoteList(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
