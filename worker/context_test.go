package worker_test

import (
	"bytes"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// seen is what a handler observed through its Context.
type seen struct {
	handler     string
	client      string
	event       bus.EventType
	attempt     int
	uid         string
	groups      []string
	session     api.Session
	info        worker.ClientInfo
	closeReason string
	msg         string
	binary      bool
	at          time.Time
	req         *worker.Request
}

func observe(handler string, c *worker.Context) seen {
	return seen{
		handler: handler, client: c.ClientID(), event: c.Event(), attempt: c.Attempt(),
		uid: c.UID(), groups: c.Groups(), session: c.Session(), info: c.Info(),
		closeReason: c.CloseReason(), binary: c.Binary(), at: c.Time(),
	}
}

// recorder returns Handlers that send what they observed on a channel.
func recorder(out chan<- seen) worker.Handlers {
	return worker.Handlers{
		OnConnect: func(c *worker.Context) { out <- observe("connect", c) },
		OnWebSocketConnect: func(c *worker.Context, r *worker.Request) {
			s := observe("websocket", c)
			s.req = r
			out <- s
		},
		OnMessage: func(c *worker.Context, msg []byte) {
			s := observe("message", c)
			s.msg = string(msg)
			out <- s
		},
		OnClose: func(c *worker.Context) { out <- observe("close", c) },
	}
}

func TestDispatchByEventType(t *testing.T) {
	e := newEnv(t)
	out := make(chan seen, 10)
	w, _ := e.start(worker.Config{}, recorder(out))

	connected := time.UnixMilli(1_700_000_000_000)
	state := bus.ClientState{
		RemoteIP: "2001:db8::1", RemotePort: 40000, UID: "u7", Groups: []string{"a", "b"},
		Session: []byte(`{"n":1}`), Listener: "ws", Protocol: "ws",
		ConnectedUnixMs: connected.UnixMilli(), LastActiveUnixMs: connected.UnixMilli() + 5,
		BytesIn: 10, BytesOut: 20, MessagesIn: 1, MessagesOut: 2, Gateway: "gwA",
	}
	req := &bus.HTTPRequest{
		Method: "GET", Path: "/chat", Query: "room=1&room=2&token=x%20y", Host: "example.org",
		Headers: []bus.Header{
			{Name: "cookie", Value: "sid=abc; theme=dark"},
			{Name: "X-Trace", Value: "t1"},
			{Name: "x-trace", Value: "t2"},
		},
	}
	tests := []struct {
		name  string
		event bus.Event
		check func(t *testing.T, s seen)
	}{
		{"connect", bus.Event{Type: bus.EventConnect, TimeUnixMs: 1_700_000_000_123}, func(t *testing.T, s seen) {
			if s.handler != "connect" || !s.at.Equal(time.UnixMilli(1_700_000_000_123)) {
				t.Errorf("got %+v", s)
			}
		}},
		{"websocket", bus.Event{Type: bus.EventWebSocketConnect, Request: req}, func(t *testing.T, s seen) {
			r := s.req
			if s.handler != "websocket" || r == nil {
				t.Fatalf("got %+v", s)
			}
			if r.Method != "GET" || r.Path != "/chat" || r.Host != "example.org" || r.RawQuery != req.Query {
				t.Errorf("request %+v", r)
			}
			if want := (url.Values{"room": {"1", "2"}, "token": {"x y"}}); !reflect.DeepEqual(r.Query, want) {
				t.Errorf("query %v, want %v", r.Query, want)
			}
			if got := r.Header.Values("X-Trace"); !slices.Equal(got, []string{"t1", "t2"}) {
				t.Errorf("X-Trace %v", got)
			}
			cookies := r.Cookies()
			if len(cookies) != 2 || cookies[0].Name != "sid" || cookies[0].Value != "abc" || cookies[1].Value != "dark" {
				t.Errorf("cookies %v", cookies)
			}
		}},
		{"websocket without request", bus.Event{Type: bus.EventWebSocketConnect}, func(t *testing.T, s seen) {
			if s.req == nil || s.req.Query == nil || s.req.Header == nil || len(s.req.Cookies()) != 0 {
				t.Errorf("request %+v", s.req)
			}
		}},
		{"text message", msgEvent("hello"), func(t *testing.T, s seen) {
			if s.handler != "message" || s.msg != "hello" || s.binary {
				t.Errorf("got %+v", s)
			}
		}},
		{"binary message", bus.Event{Type: bus.EventMessage, Data: []byte{0, 0xff, 0}, Binary: true}, func(t *testing.T, s seen) {
			if s.msg != "\x00\xff\x00" || !s.binary {
				t.Errorf("got %+v", s)
			}
		}},
		{"empty message", bus.Event{Type: bus.EventMessage}, func(t *testing.T, s seen) {
			if s.handler != "message" || s.msg != "" {
				t.Errorf("got %+v", s)
			}
		}},
		{"close", bus.Event{Type: bus.EventClose, CloseReason: "heartbeat timeout"}, func(t *testing.T, s seen) {
			if s.handler != "close" || s.closeReason != "heartbeat timeout" {
				t.Errorf("got %+v", s)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := batch(uint64(100+i), "0123456789abcdef0001", tt.event)
			b.State = state
			b.Attempt = 2
			e.publish(b)
			s := <-out
			if s.event != tt.event.Type || s.client != b.Client || s.attempt != 2 || s.uid != "u7" ||
				!slices.Equal(s.groups, []string{"a", "b"}) || !reflect.DeepEqual(s.session, api.Session{"n": 1.0}) {
				t.Errorf("context %+v", s)
			}
			wantInfo := worker.ClientInfo{
				RemoteIP: "2001:db8::1", RemotePort: 40000, Listener: "ws", Protocol: "ws", Gateway: "gwA",
				ConnectedAt: connected, LastActive: connected.Add(5 * time.Millisecond),
				BytesIn: 10, BytesOut: 20, MessagesIn: 1, MessagesOut: 2,
			}
			if !s.info.ConnectedAt.Equal(wantInfo.ConnectedAt) || !s.info.LastActive.Equal(wantInfo.LastActive) {
				t.Errorf("times %v %v", s.info.ConnectedAt, s.info.LastActive)
			}
			s.info.ConnectedAt, s.info.LastActive = wantInfo.ConnectedAt, wantInfo.LastActive
			if !reflect.DeepEqual(s.info, wantInfo) {
				t.Errorf("info %+v, want %+v", s.info, wantInfo)
			}
			tt.check(t, s)
			a := e.final()
			if a.Delivery != b.Delivery || a.Worker != w.ID() || len(a.Actions) != 0 {
				t.Errorf("ack %+v", a)
			}
		})
	}
	st := w.Stats()
	if st.Connects != 1 || st.WebSocketConnects != 2 || st.Messages != 3 || st.Closes != 1 ||
		st.Batches != 7 || st.Acked != 7 || st.Redelivered != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnknownEventIsSkipped(t *testing.T) {
	e := newEnv(t)
	out := make(chan seen, 10)
	w, _ := e.start(worker.Config{}, recorder(out))
	e.publish(batch(1, "c1", bus.Event{Type: 99}, msgEvent("after")))
	if s := <-out; s.msg != "after" {
		t.Errorf("got %+v", s)
	}
	if a := e.final(); a.Delivery != 1 {
		t.Errorf("ack %+v", a)
	}
	if st := w.Stats(); st.UnknownEvents != 1 || st.Messages != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestActionsAndLocalView: actions come out in order, and the view
// (UID, Groups, Session) follows them within a handler and into the next
// event of the same batch.
func TestActionsAndLocalView(t *testing.T) {
	e := newEnv(t)
	errs := make(chan error, 10)
	check := func(what string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			errs <- fmt.Errorf("%s: got %#v, want %#v", what, got, want)
		}
	}
	h := worker.Handlers{
		OnConnect: func(c *worker.Context) {
			c.BindUID("u1")
			check("uid after bind", c.UID(), "u1")
			c.JoinGroup("b")
			c.JoinGroup("a")
			c.JoinGroup("a")
			c.LeaveGroup("g0")
			c.JoinGroup("")
			check("groups", c.Groups(), []string{"a", "b", "g9"})
			check("in group", c.InGroup("a") && !c.InGroup("g0"), true)
			check("set", c.SetSession(api.Session{"k": 1, "old": true}), nil)
			check("update", c.UpdateSession(api.Session{"m": "x", "old": nil}), nil)
			check("update empty", c.UpdateSession(nil), nil)
			check("session", c.Session(), api.Session{"k": 1.0, "m": "x", "old": nil})
			msg := []byte("hi")
			c.Send(msg)
			msg[0] = 'X' // Send copied it
			c.SendBinary([]byte{1, 2})
			c.Protect(true)
			c.PauseRecv()
			c.ResumeRecv()
			c.Confirm()
			c.SetBinary(true)
		},
		OnMessage: func(c *worker.Context, msg []byte) {
			check("uid in next event", c.UID(), "u1")
			check("groups in next event", c.Groups(), []string{"a", "b", "g9"})
			check("session in next event", c.Session(), api.Session{"k": 1.0, "m": "x", "old": nil})
			c.UnbindUID()
			c.BindUID("")
			check("uid after unbind", c.UID(), "")
			c.DeleteSession()
			check("session after delete", c.Session(), api.Session{})
			check("update after delete", c.UpdateSession(api.Session{"z": "1"}), nil)
			check("session after update", c.Session(), api.Session{"z": "1"})
			c.Reject(401, "no token")
			c.Reject(7, "bad status")
			c.Close()
			c.CloseForce()
			c.CloseWith([]byte("bye"))
		},
	}
	e.start(worker.Config{}, h)
	b := batch(5, "c1", bus.Event{Type: bus.EventConnect}, msgEvent("m"))
	b.State = bus.ClientState{Groups: []string{"g9", "g0"}, Session: []byte(`{"gone":1}`)} // unsorted on purpose
	e.publish(b)
	a := e.final()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := []bus.Action{
		{Type: bus.ActionBindUID, Arg: "u1"},
		{Type: bus.ActionJoinGroup, Arg: "b"},
		{Type: bus.ActionJoinGroup, Arg: "a"},
		{Type: bus.ActionJoinGroup, Arg: "a"},
		{Type: bus.ActionLeaveGroup, Arg: "g0"},
		{Type: bus.ActionSetSession, Data: []byte(`{"k":1,"old":true}`)},
		{Type: bus.ActionUpdateSession, Data: []byte(`{"m":"x","old":null}`)},
		{Type: bus.ActionSend, Data: []byte("hi")},
		{Type: bus.ActionSend, Data: []byte{1, 2}, Flag: true},
		{Type: bus.ActionProtect, Flag: true},
		{Type: bus.ActionPauseRecv},
		{Type: bus.ActionResumeRecv},
		{Type: bus.ActionConfirm},
		{Type: bus.ActionSetBinary, Flag: true},
		{Type: bus.ActionUnbindUID},
		{Type: bus.ActionUnbindUID},
		{Type: bus.ActionDeleteSession},
		{Type: bus.ActionUpdateSession, Data: []byte(`{"z":"1"}`)},
		{Type: bus.ActionReject, Code: 401, Arg: "no token"},
		{Type: bus.ActionReject, Code: 403, Arg: "bad status"},
		{Type: bus.ActionClose},
		{Type: bus.ActionClose, Flag: true},
		{Type: bus.ActionClose, Data: []byte("bye")},
	}
	if !reflect.DeepEqual(a.Actions, want) {
		t.Errorf("actions:\n got %+v\nwant %+v", a.Actions, want)
	}
}

// TestRejectBeforeUpgrade: in an OnWebSocketConnect before the upgrade,
// Reject takes HTTP statuses 400-599 and returns an error (queuing
// nothing) for any other; after the upgrade it keeps mapping a status
// outside 100-999 to 403.
func TestRejectBeforeUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name    string
		before  bool
		status  int
		wantErr bool
		want    []bus.Action
	}{
		{"403 before", true, 403, false, []bus.Action{{Type: bus.ActionReject, Code: 403, Arg: "r"}}},
		{"400 before", true, 400, false, []bus.Action{{Type: bus.ActionReject, Code: 400, Arg: "r"}}},
		{"599 before", true, 599, false, []bus.Action{{Type: bus.ActionReject, Code: 599, Arg: "r"}}},
		{"399 before", true, 399, true, nil},
		{"600 before", true, 600, true, nil},
		{"4403 before", true, 4403, true, nil},
		{"200 after", false, 200, false, []bus.Action{{Type: bus.ActionReject, Code: 200, Arg: "r"}}},
		{"7 after", false, 7, false, []bus.Action{{Type: bus.ActionReject, Code: 403, Arg: "r"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			got := make(chan [2]any, 1)
			e.start(worker.Config{}, worker.Handlers{
				OnWebSocketConnect: func(c *worker.Context, r *worker.Request) {
					got <- [2]any{c.BeforeUpgrade(), c.Reject(tc.status, "r")}
				},
			})
			e.publish(batch(1, "c1", bus.Event{Type: bus.EventWebSocketConnect, Request: &bus.HTTPRequest{}, BeforeUpgrade: tc.before}))
			a := e.final()
			r := <-got
			if r[0] != tc.before {
				t.Errorf("BeforeUpgrade() = %v, want %v", r[0], tc.before)
			}
			if err, _ := r[1].(error); (err != nil) != tc.wantErr {
				t.Errorf("Reject(%d) = %v, want error %v", tc.status, err, tc.wantErr)
			}
			if !reflect.DeepEqual(a.Actions, tc.want) {
				t.Errorf("actions %+v, want %+v", a.Actions, tc.want)
			}
		})
	}
}

func TestSessionEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		state   []byte
		handle  func(c *worker.Context) error
		want    api.Session
		actions int
	}{
		{"no session", nil, nil, api.Session{}, 0},
		{"json null", []byte("null"), nil, api.Session{}, 0},
		{"malformed from gateway", []byte("{oops"), nil, api.Session{}, 0},
		{"update over malformed", []byte("[1]"), func(c *worker.Context) error {
			return c.UpdateSession(api.Session{"a": "b"})
		}, api.Session{"a": "b"}, 1},
		{"set unencodable", []byte(`{"x":1}`), func(c *worker.Context) error {
			if err := c.SetSession(api.Session{"f": func() {}}); err == nil {
				return fmt.Errorf("no error")
			}
			return nil
		}, api.Session{"x": 1.0}, 0},
		{"update unencodable", []byte(`{"x":1}`), func(c *worker.Context) error {
			if err := c.UpdateSession(api.Session{"c": make(chan int)}); err == nil {
				return fmt.Errorf("no error")
			}
			return nil
		}, api.Session{"x": 1.0}, 0},
		{"set nil is empty", []byte(`{"x":1}`), func(c *worker.Context) error {
			return c.SetSession(nil)
		}, api.Session{}, 1},
		{"returned map is a copy", []byte(`{"x":1}`), func(c *worker.Context) error {
			c.Session()["x"] = 2
			return nil
		}, api.Session{"x": 1.0}, 0},
	}
	e := newEnv(t)
	type result struct {
		session api.Session
		err     error
	}
	out := make(chan result, 1)
	var handle atomic.Pointer[func(c *worker.Context) error]
	e.start(worker.Config{}, worker.Handlers{OnMessage: func(c *worker.Context, _ []byte) {
		var err error
		if h := *handle.Load(); h != nil {
			err = h(c)
		}
		out <- result{c.Session(), err}
	}})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handle.Store(&tt.handle)
			b := batch(uint64(i+1), "c1", msgEvent(""))
			b.State.Session = tt.state
			e.publish(b)
			r := <-out
			if r.err != nil {
				t.Error(r.err)
			}
			if !reflect.DeepEqual(r.session, tt.want) {
				t.Errorf("session %#v, want %#v", r.session, tt.want)
			}
			if a := e.final(); len(a.Actions) != tt.actions {
				t.Errorf("actions %+v", a.Actions)
			}
		})
	}
}

// TestOnCloseSeesState: the close handler gets the uid, groups and session
// the client had.
func TestOnCloseSeesState(t *testing.T) {
	e := newEnv(t)
	out := make(chan seen, 1)
	e.start(worker.Config{}, recorder(out))
	b := batch(9, "c9", bus.Event{Type: bus.EventClose, CloseReason: "client closed"})
	b.State = bus.ClientState{UID: "alice", Groups: []string{"room1", "room2"}, Session: []byte(`{"name":"Alice"}`)}
	e.publish(b)
	s := <-out
	if s.handler != "close" || s.uid != "alice" || !slices.Equal(s.groups, []string{"room1", "room2"}) ||
		!reflect.DeepEqual(s.session, api.Session{"name": "Alice"}) || s.closeReason != "client closed" {
		t.Errorf("got %+v", s)
	}
	e.final()
}

// TestMessageIsHandlersOwn: the handler may keep and modify msg, and
// appending to it does not write over the rest of the batch.
func TestMessageIsHandlersOwn(t *testing.T) {
	e := newEnv(t)
	kept := make(chan []byte, 2)
	e.start(worker.Config{}, worker.Handlers{OnMessage: func(c *worker.Context, msg []byte) {
		// Use whatever capacity msg has: it must not reach into the rest
		// of the batch.
		_ = append(msg, bytes.Repeat([]byte("X"), cap(msg)-len(msg))...)
		kept <- msg
	}})
	e.publish(batch(1, "c1", msgEvent("one"), msgEvent("two")))
	e.final()
	if a, b := string(<-kept), string(<-kept); a != "one" || b != "two" {
		t.Errorf("messages %q %q", a, b)
	}
}
