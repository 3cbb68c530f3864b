package node_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/node"
)

// chatter is one chat client, over WebSocket or a TCP line listener.
type chatter struct {
	t    *testing.T
	name string
	ws   *websocket.Conn
	tcp  net.Conn
	r    *bufio.Reader
}

func wsChatter(t *testing.T, n *node.Node, name string) *chatter {
	c := &chatter{t: t, name: name, ws: dialWS(t, n)}
	c.skipHelp()
	return c
}

func tcpChatter(t *testing.T, n *node.Node, name string) *chatter {
	conn, err := net.Dial("tcp", n.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &chatter{t: t, name: name, tcp: conn, r: bufio.NewReader(conn)}
	c.skipHelp()
	return c
}

func (c *chatter) say(line string) {
	c.t.Helper()
	var err error
	if c.ws != nil {
		err = c.ws.WriteMessage(websocket.TextMessage, []byte(line))
	} else {
		_, err = c.tcp.Write([]byte(line + "\r\n")) // as telnet sends it
	}
	if err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *chatter) next() string {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	if c.ws != nil {
		_ = c.ws.SetReadDeadline(deadline)
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.t.Fatalf("%s: read: %v", c.name, err)
		}
		return string(data)
	}
	_ = c.tcp.SetReadDeadline(deadline)
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// expect reads the client's next message, which must be want.
func (c *chatter) expect(want string) {
	c.t.Helper()
	if got := c.next(); got != want {
		c.t.Fatalf("%s got %q, want %q", c.name, got, want)
	}
}

// skipHelp reads the help text sent on connect.
func (c *chatter) skipHelp() {
	c.t.Helper()
	for {
		line := c.next()
		if !strings.HasPrefix(line, "* ") {
			c.t.Fatalf("%s: help line %q", c.name, line)
		}
		if strings.Contains(line, "anything else") {
			return
		}
	}
}

func TestChat(t *testing.T) {
	n := startNode(t, chat.Handlers(), nil)
	a := wsChatter(t, n, "a")
	b := wsChatter(t, n, "b")
	c := wsChatter(t, n, "c")

	steps := []struct {
		who  *chatter
		line string
		want map[*chatter][]string // what each client receives next, in order
	}{
		{a, "hello?", map[*chatter][]string{a: {"* set a name first: /name <name>"}}},
		{a, "/join lobby", map[*chatter][]string{a: {"* set a name first: /name <name>"}}},
		{a, "/name alice", map[*chatter][]string{a: {"* you are now alice"}}},
		{b, "/name alice", map[*chatter][]string{b: {"* the name alice is taken"}}},
		{b, "/name bob smith", map[*chatter][]string{b: {"* a name cannot contain spaces or control characters; usage: /name <name>"}}},
		{b, "/name bob", map[*chatter][]string{b: {"* you are now bob"}}},
		{c, "/name carol", map[*chatter][]string{c: {"* you are now carol"}}},
		{a, "/rooms", map[*chatter][]string{a: {"* no rooms yet: /join <room> opens one"}}},
		{a, "/join lobby", map[*chatter][]string{a: {"* you joined #lobby"}}},
		{b, "/join #lobby", map[*chatter][]string{b: {"* you joined #lobby"}, a: {"* bob joined #lobby"}}},
		{c, "/join lobby", map[*chatter][]string{c: {"* you joined #lobby"}, a: {"* carol joined #lobby"}, b: {"* carol joined #lobby"}}},
		// The sayer gets nothing back: its next message answers /who.
		{a, "hello all", map[*chatter][]string{b: {"[lobby] alice: hello all"}, c: {"[lobby] alice: hello all"}}},
		{a, "/who", map[*chatter][]string{a: {"* in #lobby: alice, bob, carol"}}},
		{b, "/msg carol psst", map[*chatter][]string{b: {"[pm to carol] psst"}, c: {"[pm from bob] psst"}}},
		{a, "/msg dave hi", map[*chatter][]string{a: {"* no one named dave is online"}}},
		{c, "/rooms", map[*chatter][]string{c: {"* rooms: #lobby"}}},
		{c, "/dance", map[*chatter][]string{c: {"* unknown command /dance; /help lists the commands"}}},
		{c, "//dance", map[*chatter][]string{a: {"[lobby] carol: /dance"}, b: {"[lobby] carol: /dance"}}},
		{c, "/join kitchen", map[*chatter][]string{c: {"* you joined #kitchen"}, a: {"* carol left #lobby"}, b: {"* carol left #lobby"}}},
		{c, "/rooms", map[*chatter][]string{c: {"* rooms: #kitchen, #lobby"}}},
		{b, "/name robert", map[*chatter][]string{b: {"* you are now robert"}, a: {"* bob is now known as robert"}}},
		{b, "/leave", map[*chatter][]string{b: {"* you left #lobby"}, a: {"* robert left #lobby"}}},
		{b, "anyone?", map[*chatter][]string{b: {"* you are in no room: /join <room>"}}},
		{a, "/who", map[*chatter][]string{a: {"* in #lobby: alice"}}},
	}
	// The chat announces a join through the API while the join itself is
	// applied with the handler's answer: the two may cross, so the
	// announcement of alice's join into the empty lobby, which nobody is
	// there to receive, can reach bob or carol after they joined. Every
	// later announcement is awaited by the test before anyone else joins.
	stale := map[*chatter]bool{}
	for i, s := range steps {
		s.who.say(s.line)
		for cl, lines := range s.want {
			for _, l := range lines {
				got := cl.next()
				if got == "* alice joined #lobby" && got != l && !stale[cl] {
					stale[cl] = true
					got = cl.next()
				}
				if got != l {
					t.Fatalf("step %d (%s: %q): %s got %q, want %q", i, s.who.name, s.line, cl.name, got, l)
				}
			}
		}
	}

	// A TCP client joins the same room: the chat works the same over the
	// line listener, and multi-line text arrives as one line.
	d := tcpChatter(t, n, "d")
	d.say("/name dave")
	d.expect("* you are now dave")
	d.say("/join lobby")
	d.expect("* you joined #lobby")
	a.expect("* dave joined #lobby")
	d.say("hi from tcp")
	a.expect("[lobby] dave: hi from tcp")
	a.say("two\nlines")
	d.expect("[lobby] alice: two lines")

	// A departure is announced to the room with the name the client had.
	_ = a.ws.Close()
	d.expect("* alice left #lobby")
	d.say("/who")
	d.expect("* in #lobby: dave")
	d.say("/quit")
	d.expect("* bye")
	if _, err := d.r.ReadString('\n'); err == nil {
		t.Error("connection still open after /quit")
	}
}
