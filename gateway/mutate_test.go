package gateway

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatework/gatework/bus"
)

// errLog keeps the "err" attribute of every warning logged.
type errLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *errLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *errLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *errLog) WithGroup(string) slog.Handler            { return l }
func (l *errLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			l.mu.Lock()
			l.errs = append(l.errs, a.Value.String())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *errLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.errs
	l.errs = nil
	return out
}

// clientView is what a mutation can change of a client.
type clientView struct {
	UID       string
	Groups    string
	Session   string
	Protected bool
	Binary    bool
	Rx        uint32
}

func viewOf(c *conn) clientView {
	c.sh.mu.Lock()
	defer c.sh.mu.Unlock()
	return clientView{c.uid, strings.Join(c.groups, ","), string(c.session), c.protected, c.binary, c.rx.Load()}
}

// TestMutationsOneImplementation drives every client mutation through a
// worker's ack action on one client and through the API command on
// another, step by step, and checks after each step that both clients
// look the same and that bad input gets the same error on both paths
// (the command's answer, the action's logged warning).
func TestMutationsOneImplementation(t *testing.T) {
	nc := testBus(t)
	w := startMsgWorker(t, nc, nil)
	logs := &errLog{}
	cfg := rxConfig("ws")
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Protocol: "tcp", Addr: "127.0.0.1:0"})
	cfg.MaxGroups = 2
	cfg.Logger = slog.New(logs)
	s, err := New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	for _, protocol := range []string{"ws", "tcp"} {
		t.Run(protocol, func(t *testing.T) {
			w.mu.Lock()
			first := len(w.clients)
			w.mu.Unlock()
			for range 2 {
				if err := dialRx(t, s, protocol).send("hi", time.Second); err != nil {
					t.Fatal(err)
				}
			}
			byAction, err := s.lookup(w.client(t, first))
			if err != nil {
				t.Fatal(err)
			}
			byCommand, err := s.lookup(w.client(t, first+1))
			if err != nil {
				t.Fatal(err)
			}
			long := strings.Repeat("é", MaxNameBytes/2) + "x"
			big := `{"k":"` + strings.Repeat("v", MaxSessionBytes) + `"}`
			for _, tc := range []struct {
				name    string
				action  bus.Action
				op      bus.Op
				wantErr string // a part of the error; "" for none
			}{
				{"bind", bus.Action{Type: bus.ActionBindUID, Arg: "u1"}, bus.OpBindUID, ""},
				{"bind empty", bus.Action{Type: bus.ActionBindUID}, bus.OpBindUID, "uid must not be empty"},
				{"bind too long", bus.Action{Type: bus.ActionBindUID, Arg: long}, bus.OpBindUID, "is over 1024"},
				{"bind not UTF-8", bus.Action{Type: bus.ActionBindUID, Arg: "a\xff"}, bus.OpBindUID, "not valid UTF-8"},
				{"unbind", bus.Action{Type: bus.ActionUnbindUID}, bus.OpUnbindUID, ""},
				{"join", bus.Action{Type: bus.ActionJoinGroup, Arg: "g1"}, bus.OpJoinGroup, ""},
				{"join again", bus.Action{Type: bus.ActionJoinGroup, Arg: "g1"}, bus.OpJoinGroup, ""},
				{"join second", bus.Action{Type: bus.ActionJoinGroup, Arg: "g2"}, bus.OpJoinGroup, ""},
				{"join over max_groups", bus.Action{Type: bus.ActionJoinGroup, Arg: "g3"}, bus.OpJoinGroup, "max_groups"},
				{"join empty", bus.Action{Type: bus.ActionJoinGroup}, bus.OpJoinGroup, "group must not be empty"},
				{"join too long", bus.Action{Type: bus.ActionJoinGroup, Arg: long}, bus.OpJoinGroup, "is over 1024"},
				{"leave", bus.Action{Type: bus.ActionLeaveGroup, Arg: "g1"}, bus.OpLeaveGroup, ""},
				{"leave empty", bus.Action{Type: bus.ActionLeaveGroup}, bus.OpLeaveGroup, "group must not be empty"},
				{"set session", bus.Action{Type: bus.ActionSetSession, Data: []byte(`{"a":1}`)}, bus.OpSetSession, ""},
				{"set session array", bus.Action{Type: bus.ActionSetSession, Data: []byte(`[1]`)}, bus.OpSetSession, "must be a JSON object"},
				{"set session too big", bus.Action{Type: bus.ActionSetSession, Data: []byte(big)}, bus.OpSetSession, "is over 65536"},
				{"update session", bus.Action{Type: bus.ActionUpdateSession, Data: []byte(`{"b":2}`)}, bus.OpUpdateSession, ""},
				{"update session null", bus.Action{Type: bus.ActionUpdateSession, Data: []byte(`null`)}, bus.OpUpdateSession, "not null"},
				{"update session too big", bus.Action{Type: bus.ActionUpdateSession, Data: []byte(big[:MaxSessionBytes-8] + `"}`)}, bus.OpUpdateSession, "merged session"},
				{"delete session", bus.Action{Type: bus.ActionDeleteSession}, bus.OpDeleteSession, ""},
				{"protect", bus.Action{Type: bus.ActionProtect, Flag: true}, bus.OpProtect, ""},
				{"unprotect", bus.Action{Type: bus.ActionProtect}, bus.OpProtect, ""},
				{"set binary", bus.Action{Type: bus.ActionSetBinary, Flag: true}, bus.OpSetBinary, ""},
				{"pause", bus.Action{Type: bus.ActionPauseRecv}, bus.OpPauseRecv, ""},
				{"resume", bus.Action{Type: bus.ActionResumeRecv}, bus.OpResumeRecv, ""},
				{"confirm", bus.Action{Type: bus.ActionConfirm}, bus.OpConfirm, ""},
			} {
				logs.take()
				done := make(chan struct{})
				s.applyActions(byAction, []bus.Action{tc.action}, func() { close(done) })
				<-done
				actionErrs := logs.take()

				cmd := bus.Command{Version: bus.Version, Op: tc.op, Clients: []string{byCommand.id(s.id)},
					Arg: tc.action.Arg, Data: tc.action.Data, Flag: tc.action.Flag}
				var rep bus.Reply
				cmdErr := s.execute(&cmd, &rep)

				if tc.wantErr == "" {
					if cmdErr != nil || len(actionErrs) != 0 {
						t.Errorf("%s: command error %v, action errors %q", tc.name, cmdErr, actionErrs)
					}
				} else {
					ec, _ := cmdErr.(*errCode)
					if ec == nil || ec.code != bus.ErrCodeInvalidRequest || !strings.Contains(ec.msg, tc.wantErr) {
						t.Errorf("%s: command error %v, want invalid_request with %q", tc.name, cmdErr, tc.wantErr)
					} else if !slices.Equal(actionErrs, []string{ec.msg}) {
						t.Errorf("%s: action logged %q, command answered %q", tc.name, actionErrs, ec.msg)
					}
				}
				if a, c := viewOf(byAction), viewOf(byCommand); a != c {
					t.Errorf("%s: by action %+v, by command %+v", tc.name, a, c)
				}
			}
			want := clientView{Groups: "g2", Binary: true}
			if got := viewOf(byAction); got != want {
				t.Errorf("final state %+v, want %+v", got, want)
			}
		})
	}
}
