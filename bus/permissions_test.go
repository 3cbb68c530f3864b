package bus_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/internal/natsembed"
	"github.com/gatework/gatework/internal/testbus"
)

// permRule says which roles may publish to a subject family, subscribe to
// it, and subscribe to it in the workers' queue group. A nil pub means
// not a publish subject (a wildcard, checked as a subscription only).
type permRule struct {
	subject   string // what is published or subscribed to
	sample    string // a message subject a subscription to subject gets; "" means subject
	pub       []bus.Role
	sub, qsub []bus.Role
	queue     string // the queue group of the qsub column; "" means the workers'
}

const testGateway = "0123456789"

var (
	gwOnly   = []bus.Role{bus.RoleGateway, bus.RoleNode}
	callers  = []bus.Role{bus.RoleWorker, bus.RoleAPI, bus.RoleNode}
	everyone = bus.Roles
	nobody   = []bus.Role{}
	workers  = []bus.Role{bus.RoleWorker, bus.RoleNode}
	// Gateways read the workers' announcements (whether any has a close
	// handler) but do not announce.
	announceReaders = []bus.Role{bus.RoleWorker, bus.RoleGateway, bus.RoleNode}
)

// subjectRules returns the rule of every subject family of s, keyed by
// the Subjects method that names it, and rules of wildcard subscriptions
// that must reach nothing they should not.
func subjectRules(s bus.Subjects) (families map[string][]permRule, wildcards []permRule) {
	inboxes := make([]permRule, 0, len(bus.Roles))
	taskReplies := make([]permRule, 0, len(bus.Roles)+1)
	for _, r := range bus.Roles {
		// Only the role itself reads its replies; nobody publishes to an
		// inbox except as the answer to a request (allow_responses,
		// TestResponsePermissions).
		own := []bus.Role{r}
		inboxes = append(inboxes, permRule{subject: s.Inbox(r) + ".x1", pub: nobody, sub: own, qsub: own})
		// Task workers answer tasks in any submitter's inbox, below
		// ".task." only.
		taskReplies = append(taskReplies, permRule{subject: bus.TaskReplies(s.Inbox(r), "x3"), pub: workers, sub: own, qsub: own})
	}
	taskReplies = append(taskReplies, permRule{subject: s.AllTaskReplies(), sample: bus.TaskReplies(s.Inbox(bus.RoleAPI), "x4"),
		sub: nobody, qsub: nobody})
	families = map[string][]permRule{
		// Only workers take tasks, inside their queue group only; workers
		// and API callers submit them.
		"Tasks":            {{subject: s.Tasks(), pub: callers, sub: nobody, qsub: workers, queue: s.TaskQueue()}},
		"TaskQueue":        nil, // a queue group: the Tasks rule uses it
		"AllTaskReplies":   taskReplies,
		"WorkerAnnounce":   {{subject: s.WorkerAnnounce(), pub: workers, sub: announceReaders, qsub: announceReaders}},
		"WorkerInbox":      {{subject: s.WorkerInbox("w-1"), pub: workers, sub: workers, qsub: workers}},
		"AllWorkerInboxes": {{subject: s.AllWorkerInboxes(), sample: s.WorkerInbox("w-2"), sub: workers, qsub: workers}},
		"WorkerBroadcast":  {{subject: s.WorkerBroadcast(), pub: workers, sub: workers, qsub: workers}},
		"Events": {{subject: s.Events(), pub: gwOnly, sub: nobody,
			qsub: []bus.Role{bus.RoleWorker, bus.RoleNode}}},
		// Multi batches: the same rule as Events (workers only inside
		// their queue group).
		"EventsMulti": {{subject: s.EventsMulti(), pub: gwOnly, sub: nobody,
			qsub: []bus.Role{bus.RoleWorker, bus.RoleNode}}},
		"WorkersQueue": nil, // a queue group, not a subject: the qsub column uses it
		"Ack": {{subject: s.Ack(testGateway) + ".7", pub: []bus.Role{bus.RoleWorker, bus.RoleNode}, sub: gwOnly, qsub: gwOnly},
			// The reply subject of an EventBatches (its Acks).
			{subject: s.Ack(testGateway) + ".m7", pub: []bus.Role{bus.RoleWorker, bus.RoleNode}, sub: gwOnly, qsub: gwOnly}},
		"Cmd": {{subject: s.Cmd(testGateway), pub: callers, sub: gwOnly, qsub: gwOnly}},
		// Uid gates: gateway to gateway only; no worker or API caller
		// can take or free a uid's gate.
		"UIDGate":   {{subject: s.UIDGate(testGateway), pub: gwOnly, sub: gwOnly, qsub: gwOnly}},
		"Broadcast": {{subject: s.Broadcast(), pub: callers, sub: gwOnly, qsub: gwOnly}},
		"Group":     {{subject: s.Group("room"), pub: callers, sub: gwOnly, qsub: gwOnly}},
		"UID":       {{subject: s.UID("alice"), pub: callers, sub: gwOnly, qsub: gwOnly}},
		"AllGroups": {{subject: s.AllGroups(), sample: s.Group("room"), sub: gwOnly, qsub: gwOnly}},
		"AllUIDs":   {{subject: s.AllUIDs(), sample: s.UID("alice"), sub: gwOnly, qsub: gwOnly}},
		"Query":     {{subject: s.Query(), pub: callers, sub: gwOnly, qsub: gwOnly}},
		"Heartbeat": {{subject: s.Heartbeat(), pub: gwOnly, sub: everyone, qsub: everyone}},
		"Inbox":     inboxes,
		"DeadLetter": {{subject: s.DeadLetter(), pub: gwOnly,
			sub: []bus.Role{bus.RoleWorker, bus.RoleNode}, qsub: []bus.Role{bus.RoleWorker, bus.RoleNode}}},
	}
	p := s.Prefix
	wildcards = []permRule{
		{subject: ">", sample: s.Cmd(testGateway), sub: nobody, qsub: nobody},
		{subject: p + ".>", sample: s.Group("room"), sub: nobody, qsub: nobody},
		{subject: "_INBOX.>", sample: "_INBOX.abc.1", sub: nobody, qsub: nobody},
		{subject: p + ".inbox.>", sample: s.Inbox(bus.RoleAPI) + ".x2", sub: nobody, qsub: nobody},
		{subject: p + ".gw.>", sample: s.Cmd(testGateway), sub: nobody, qsub: nobody},
		{subject: p + ".gw.*.cmd", sample: s.Cmd(testGateway), sub: gwOnly, qsub: gwOnly},
		{subject: p + ".*", sample: s.Events(), sub: nobody, qsub: nobody},
	}
	return families, wildcards
}

// TestSubjectRulesComplete fails when bus.Subjects gains a method that
// the permission table does not cover: add its rule to subjectRules and
// to bus.Permissions.
func TestSubjectRulesComplete(t *testing.T) {
	s, _ := bus.NewSubjects("")
	families, _ := subjectRules(s)
	typ := reflect.TypeOf(s)
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		if _, ok := families[name]; !ok {
			t.Errorf("bus.Subjects.%s has no rule in subjectRules (permissions_test.go): who may publish and subscribe to it?", name)
		}
		delete(families, name)
	}
	for name := range families {
		t.Errorf("subjectRules has a rule for %s, which bus.Subjects does not have", name)
	}
}

// busUser is one connection of a role to a server under test.
type busUser struct {
	role bus.Role
	nc   *nats.Conn
	viol *violations
}

// TestBusPermissions checks every subject family against every role on
// real servers: the embedded server with its real users (the worker user,
// the node's full-access user, and its configured user with each role),
// and a nats-server that loads
// AuthorizationConfig, the configuration docs/security.md gives operators
// of an external NATS (every role). For each it publishes and subscribes
// (plainly and in the workers' queue group) and observes whether the
// message is delivered; messages on one connection keep their order, so a
// flush after the message proves it was not delivered. Every denial must
// also be reported as a permissions violation.
func TestBusPermissions(t *testing.T) {
	s, _ := bus.NewSubjects("acme.gw")
	families, wildcards := subjectRules(s)
	var rules []permRule
	for _, r := range families {
		rules = append(rules, r...)
	}
	rules = append(rules, wildcards...)

	t.Run("embedded", func(t *testing.T) {
		e := startEmbedded(t, natsembed.Config{Listen: "127.0.0.1:0", Prefix: s.Prefix})
		observer := connectOpts(t, e.ConnectOptions("observer"), nil)
		wo := e.WorkerOptions("worker")
		var wv violations
		w := connectOpts(t, wo, &wv)
		if got := w.Opts.InboxPrefix; got != s.Inbox(bus.RoleWorker) {
			t.Errorf("worker inbox prefix %q, want %q", got, s.Inbox(bus.RoleWorker))
		}
		var nv violations
		n := connectOpts(t, e.ConnectOptions("node"), &nv)
		checkRules(t, s, observer, rules, []busUser{{bus.RoleWorker, w, &wv}}, false)
		checkRules(t, s, observer, rules, []busUser{{bus.RoleNode, n, &nv}}, true)
	})
	// The embedded server's configured user (nats.user) with a role.
	for _, r := range bus.Roles {
		t.Run("embedded user_role "+string(r), func(t *testing.T) {
			e := startEmbedded(t, natsembed.Config{Listen: "127.0.0.1:0", Prefix: s.Prefix,
				User: "remote", Password: "remote-pw", UserRole: r})
			observer := connectOpts(t, e.ConnectOptions("observer"), nil)
			var v violations
			nc := connectOpts(t, bus.Options{URL: e.ClientURL(), User: "remote", Password: "remote-pw", InboxPrefix: s.Inbox(r)}, &v)
			checkRules(t, s, observer, rules, []busUser{{r, nc, &v}}, false)
		})
	}
	t.Run("operator config", func(t *testing.T) {
		url := startConfigured(t, s)
		observer := connectOpts(t, bus.Options{URL: url, User: "observer", Password: "observer-pw"}, nil)
		var users []busUser
		for _, r := range bus.Roles {
			v := &violations{}
			nc := connectOpts(t, bus.Options{URL: url, User: bus.UserName(r), Password: "pw-" + string(r),
				InboxPrefix: s.Inbox(r)}, v)
			users = append(users, busUser{r, nc, v})
		}
		checkRules(t, s, observer, rules, users, false)
	})
}

// startConfigured starts a nats-server from a configuration file holding
// AuthorizationConfig(s), with passwords "pw-<role>" in the environment
// and one more user with full access, observer, and returns its URL.
func startConfigured(t *testing.T, s bus.Subjects) string {
	t.Helper()
	for _, r := range bus.Roles {
		t.Setenv(bus.PasswordVar(r), "pw-"+string(r))
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:-1\n"+bus.AuthorizationConfig(s)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects AuthorizationConfig: %v\n%s", err, bus.AuthorizationConfig(s))
	}
	if len(opts.Users) != len(bus.Roles) {
		t.Fatalf("%d users configured, want %d", len(opts.Users), len(bus.Roles))
	}
	for i, r := range bus.Roles {
		u := opts.Users[i]
		if u.Username != bus.UserName(r) || u.Password != "pw-"+string(r) {
			t.Errorf("user %d: %s/%s, want %s with the password from $%s", i, u.Username, u.Password, bus.UserName(r), bus.PasswordVar(r))
		}
		// ProcessConfigFile fills in the response defaults: compare the
		// subject lists and whether responses are allowed.
		want := bus.Permissions(s, r)
		if !reflect.DeepEqual(u.Permissions.Publish, &server.SubjectPermission{Allow: want.Publish}) ||
			!reflect.DeepEqual(u.Permissions.Subscribe, &server.SubjectPermission{Allow: want.Subscribe}) ||
			(u.Permissions.Response != nil) != want.Responses {
			t.Errorf("%s: the configuration file gives %+v, bus.Permissions %+v", r, u.Permissions, want)
		}
	}
	opts.Users = append(opts.Users, &server.User{Username: "observer", Password: "observer-pw"})
	return testbus.StartServer(t, opts).ClientURL()
}

// startEmbedded starts a natsembed.Server for the test.
func startEmbedded(t *testing.T, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	return testbus.Start(t, cfg)
}

// violations collects the asynchronous permission errors of a connection.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err)
	v.mu.Unlock()
}

func (v *violations) has(s string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, err := range v.errs {
		if strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

// connectOpts connects with o, without reconnecting, reporting
// asynchronous errors to v (nil: none expected).
func connectOpts(t *testing.T, o bus.Options, v *violations) *nats.Conn {
	t.Helper()
	opts := []nats.Option{nats.NoReconnect(), nats.Timeout(5 * time.Second)}
	if v != nil {
		opts = append(opts, nats.ErrorHandler(v.handler))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	url := o.URL
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// checkRules checks each rule for each user; full means the user may do
// anything.
func checkRules(t *testing.T, s bus.Subjects, observer *nats.Conn, rules []permRule, users []busUser, full bool) {
	t.Helper()
	for _, u := range users {
		for _, r := range rules {
			allowed := func(roles []bus.Role) bool { return full || slices.Contains(roles, u.role) }
			if r.pub != nil {
				got := delivered(t, observer, r.subject, func() {
					if err := u.nc.Publish(r.subject, []byte("from "+string(u.role))); err != nil {
						t.Fatal(err)
					}
				}, u.nc)
				expect(t, u, "publish to", r.subject, allowed(r.pub), got, "Publish")
			}
			got := subscribed(t, observer, u.nc, r.subject, r.sample, "")
			expect(t, u, "subscribe to", r.subject, allowed(r.sub), got, "Subscription")
			queue := r.queue
			if queue == "" {
				queue = s.WorkersQueue()
			}
			got = subscribed(t, observer, u.nc, r.subject, r.sample, queue)
			expect(t, u, "queue-subscribe ("+queue+") to", r.subject, allowed(r.qsub), got, "Subscription")
		}
		// The events or the tasks, in any other queue group, would be a
		// copy.
		for _, subj := range []string{s.Events(), s.Tasks()} {
			got := subscribed(t, observer, u.nc, subj, "", "spy")
			expect(t, u, "queue-subscribe (spy) to", subj, full, got, "Subscription")
		}
		if !full {
			continue
		}
		u.viol.mu.Lock()
		if len(u.viol.errs) > 0 {
			t.Errorf("%s: errors %v", u.role, u.viol.errs)
		}
		u.viol.mu.Unlock()
	}
}

// expect reports a mismatch and, for a denial, waits for its violation.
func expect(t *testing.T, u busUser, what, subject string, want, got bool, kind string) {
	t.Helper()
	if got != want {
		t.Errorf("%s may %s %s: %v, want %v", u.role, what, subject, got, want)
		return
	}
	if !want {
		msg := `Permissions Violation for ` + kind + ` to "` + subject + `"`
		deadline := time.Now().Add(5 * time.Second)
		for !u.viol.has(msg) {
			if time.Now().After(deadline) {
				t.Errorf("%s: no %s", u.role, msg)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// delivered reports whether publish, run on conn pub, gets a message to
// an observer's subscription to subject.
func delivered(t *testing.T, observer *nats.Conn, subject string, publish func(), pub *nats.Conn) bool {
	t.Helper()
	sub, err := observer.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	flush(t, observer)
	publish()
	flush(t, pub)      // the server has handled the publication…
	flush(t, observer) // …and the observer has read what it delivered
	n, _, err := sub.Pending()
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// subscribed reports whether a subscription of nc to subject (in queue,
// unless "") gets a message the observer publishes on sample (or subject).
func subscribed(t *testing.T, observer, nc *nats.Conn, subject, sample, queue string) bool {
	t.Helper()
	if sample == "" {
		sample = subject
	}
	var sub *nats.Subscription
	var err error
	if queue == "" {
		sub, err = nc.SubscribeSync(subject)
	} else {
		sub, err = nc.QueueSubscribeSync(subject, queue)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	flush(t, nc)
	if err := observer.Publish(sample, []byte("observer")); err != nil {
		t.Fatal(err)
	}
	flush(t, observer)
	flush(t, nc)
	n, _, err := sub.Pending()
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func flush(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestResponsePermissions: a gateway answers the requests it gets (NATS
// allow_responses) on the caller's inbox, which it may not publish to
// otherwise; a worker answers an event batch on its ack subject.
func TestResponsePermissions(t *testing.T) {
	s, _ := bus.NewSubjects("")
	url := startConfigured(t, s)
	conn := func(r bus.Role, v *violations) *nats.Conn {
		return connectOpts(t, bus.Options{URL: url, User: bus.UserName(r), Password: "pw-" + string(r), InboxPrefix: s.Inbox(r)}, v)
	}
	var gv violations
	gw := conn(bus.RoleGateway, &gv)
	for _, subject := range []string{s.Query(), s.Cmd(testGateway)} {
		sub, err := gw.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond([]byte("reply from " + m.Subject)) })
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	flush(t, gw)
	for _, r := range []bus.Role{bus.RoleAPI, bus.RoleWorker, bus.RoleNode} {
		caller := conn(r, nil)
		for _, subject := range []string{s.Query(), s.Cmd(testGateway)} {
			m, err := caller.Request(subject, []byte("?"), 5*time.Second)
			if err != nil {
				t.Fatalf("%s: request on %s: %v", r, subject, err)
			}
			if string(m.Data) != "reply from "+subject || !strings.HasPrefix(m.Subject, s.Inbox(r)+".") {
				t.Errorf("%s: reply %q on %s", r, m.Data, m.Subject)
			}
		}
	}
	// The worker acks a batch the gateway published with a reply subject.
	w := conn(bus.RoleWorker, nil)
	events, err := w.QueueSubscribeSync(s.Events(), s.WorkersQueue())
	if err != nil {
		t.Fatal(err)
	}
	flush(t, w)
	acks, err := gw.SubscribeSync(s.Ack(testGateway) + ".*")
	if err != nil {
		t.Fatal(err)
	}
	flush(t, gw)
	if err := gw.PublishRequest(s.Events(), s.Ack(testGateway)+".1", []byte("batch")); err != nil {
		t.Fatal(err)
	}
	m, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Respond([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	if m, err := acks.NextMsg(5 * time.Second); err != nil || string(m.Data) != "ack" {
		t.Fatalf("gateway got no ack: %v", err)
	}
	gv.mu.Lock()
	defer gv.mu.Unlock()
	if len(gv.errs) > 0 {
		t.Errorf("gateway errors: %v", gv.errs)
	}
}

// TestSecurityDocConfig: docs/security.md shows AuthorizationConfig of
// the default prefix as it is.
func TestSecurityDocConfig(t *testing.T) {
	doc, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := bus.NewSubjects("")
	if want := "```\n" + bus.AuthorizationConfig(s) + "```\n"; !strings.Contains(string(doc), want) {
		t.Errorf("docs/security.md does not show bus.AuthorizationConfig of the default prefix; it is:\n%s", want)
	}
}
