package chat

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line string
		want command
		err  string // substring of the usage error; "" means none
	}{
		{line: "", want: command{kind: kindEmpty}},
		{line: "  \r\n", want: command{kind: kindEmpty}},
		{line: "hello", want: command{kind: kindSay, text: "hello"}},
		{line: "hello world\r\n", want: command{kind: kindSay, text: "hello world"}},
		{line: "  spaced  ", want: command{kind: kindSay, text: "  spaced  "}},
		{line: "two\nlines", want: command{kind: kindSay, text: "two lines"}},
		{line: "a\r\nb\rc", want: command{kind: kindSay, text: "a b c"}},
		{line: "bad \xff utf8", want: command{kind: kindSay, text: "bad \uFFFD utf8"}},
		{line: "//not a command", want: command{kind: kindSay, text: "/not a command"}},
		{line: "/name alice", want: command{kind: kindName, arg: "alice"}},
		{line: "/NAME  alice  \r\n", want: command{kind: kindName, arg: "alice"}},
		{line: "/nick\tbob", want: command{kind: kindName, arg: "bob"}},
		{line: "/name Zoë", want: command{kind: kindName, arg: "Zoë"}},
		{line: "/name", err: "a name is needed"},
		{line: "/name alice smith", err: "spaces"},
		{line: "/name " + strings.Repeat("x", MaxName+1), err: "at most"},
		{line: "/name /root", err: "cannot start with"},
		{line: "/name a\x01b", err: "control"},
		{line: "/join lobby", want: command{kind: kindJoin, arg: "lobby"}},
		{line: "/join #lobby", want: command{kind: kindJoin, arg: "lobby"}},
		{line: "/join", err: "a room is needed"},
		{line: "/join two words", err: "spaces"},
		{line: "/leave", want: command{kind: kindLeave}},
		{line: "/part now", want: command{kind: kindLeave}},
		{line: "/msg bob hi there", want: command{kind: kindMsg, arg: "bob", text: "hi there"}},
		{line: "/msg bob   hi  ", want: command{kind: kindMsg, arg: "bob", text: "hi"}},
		{line: "/msg bob", err: "usage: /msg"},
		{line: "/msg", err: "usage: /msg"},
		{line: "/who", want: command{kind: kindWho}},
		{line: "/rooms", want: command{kind: kindRooms}},
		{line: "/list", want: command{kind: kindRooms}},
		{line: "/help", want: command{kind: kindHelp}},
		{line: "/quit\n", want: command{kind: kindQuit}},
		{line: "/dance wildly", want: command{kind: kindUnknown, word: "/dance"}},
		{line: "/", want: command{kind: kindUnknown, word: "/"}},
	}
	for _, tt := range tests {
		got, err := parse(tt.line)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parse(%q) error = %v, want one containing %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse(%q) error = %v", tt.line, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parse(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"hello", "/name alice", "/msg bob hi", "/join #x", "//x", "\xff\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parse(line)
		if err != nil {
			return
		}
		// Every line the chat sends must be one line on a TCP listener.
		for _, s := range []string{cmd.arg, cmd.text, cmd.word} {
			if strings.ContainsAny(s, "\r\n") {
				t.Fatalf("parse(%q) left a line break: %+v", line, cmd)
			}
		}
		if (cmd.kind == kindName || cmd.kind == kindJoin || cmd.kind == kindMsg) && checkName("name", cmd.arg) != nil {
			t.Fatalf("parse(%q) accepted a bad name: %+v", line, cmd)
		}
	})
}
