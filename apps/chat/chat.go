// Package chat is the built-in demo chat room: `gatework start --app chat`.
//
// It speaks a line protocol that works the same over WebSocket (one line
// per message) and over a TCP line listener (`nc 127.0.0.1 7273`):
//
//	/name <name>        set your name; it becomes the connection's uid
//	/join <room>        enter a room, leaving the one you were in
//	/leave              leave your room
//	/msg <name> <text>  private message to every connection of <name>
//	/who                names in your room
//	/rooms              rooms that have people in them
//	/help               the command list
//	/quit               disconnect
//	anything else       said to your room ("//text" says "/text")
//
// A name must be set before joining, saying or sending; it is refused if a
// connection already uses it (checked with IsUIDOnline: two clients asking
// for the same free name at the same instant may both get it) or if it has
// spaces. A room is a group of the same name; a client is in at most one
// room.
//
// What a client receives, one line each: notices that start with "* "
// (answers to commands, joins and departures), and
//
//	[<room>] <name>: <text>    said in the room (not echoed to the sayer)
//	[pm from <name>] <text>    a private message
//	[pm to <name>] <text>      the confirmation of one sent
//
// When a client disconnects, its room is told ("* alice left #lobby").
// Announcements go through the API while a join is applied when the
// handler returns, so the two may cross: a client that joins a room at
// the same moment as another may see the other's arrival announced.
// The chat keeps no state of its own: names are uids, rooms are groups, so
// it works unchanged with any number of workers and gateways.
package chat

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/worker"
)

// maxList bounds the names listed by /who and the rooms listed by /rooms.
const maxList = 200

// help is sent on connect and for /help, one message per line.
var help = []string{
	"* welcome to the gatework chat. commands:",
	"*   /name <name>        set your name (first of all)",
	"*   /join <room>        enter a room (leaving yours)",
	"*   /leave              leave your room",
	"*   /msg <name> <text>  private message",
	"*   /who                who is in your room",
	"*   /rooms              rooms with people in them",
	"*   /help               this list",
	"*   /quit               disconnect",
	"*   anything else is said to your room",
}

// Handlers returns the chat app. The handlers keep no state: they are
// safe for any number of workers and goroutines. They need the worker's
// API (worker.New with a non-nil api.API); without it the commands that
// reach other clients answer with an error.
func Handlers() worker.Handlers {
	return worker.Handlers{
		OnConnect: func(c *worker.Context) { sendLines(c, help) },
		OnMessage: onMessage,
		OnClose:   onClose,
	}
}

func sendLines(c *worker.Context, lines []string) {
	for _, l := range lines {
		c.Send([]byte(l))
	}
}

func notice(c *worker.Context, format string, args ...any) {
	c.Send([]byte("* " + fmt.Sprintf(format, args...)))
}

// room returns the client's room, "" when it is in none.
func room(c *worker.Context) string {
	if g := c.Groups(); len(g) > 0 {
		return g[0]
	}
	return ""
}

func onMessage(c *worker.Context, msg []byte) {
	cmd, err := parse(string(msg))
	if err != nil {
		notice(c, "%s", err)
		return
	}
	a := c.API()
	switch cmd.kind {
	case kindEmpty:
		return
	case kindHelp:
		sendLines(c, help)
		return
	case kindQuit:
		notice(c, "bye")
		c.Close()
		return
	case kindUnknown:
		notice(c, "unknown command %s; /help lists the commands", cmd.word)
		return
	}
	if a == nil {
		notice(c, "this worker has no API: only /help and /quit work")
		return
	}
	ctx := c.Context()
	name := c.UID()
	if cmd.kind == kindName {
		setName(ctx, c, a, name, cmd.arg)
		return
	}
	if name == "" {
		notice(c, "set a name first: /name <name>")
		return
	}
	var r string
	switch cmd.kind {
	case kindJoin:
		join(ctx, c, a, name, cmd.arg)
		return
	case kindMsg:
		private(ctx, c, a, name, cmd.arg, cmd.text)
		return
	case kindRooms:
		listRooms(ctx, c, a)
		return
	}
	if r = room(c); r == "" {
		notice(c, "you are in no room: /join <room>")
		return
	}
	switch cmd.kind {
	case kindLeave:
		c.LeaveGroup(r)
		announce(ctx, c, a, r, name+" left #"+r)
		notice(c, "you left #%s", r)
	case kindWho:
		p, err := a.GetUIDListByGroup(ctx, r, true, api.PageRequest{Limit: maxList})
		if err != nil {
			notice(c, "error: %v", err)
			return
		}
		notice(c, "in #%s: %s", r, joinList(p, ""))
	case kindSay:
		line := "[" + r + "] " + name + ": " + cmd.text
		if err := a.SendToGroup(ctx, []string{r}, []byte(line), c.ClientID()); err != nil {
			notice(c, "not sent: %v", err)
		}
	}
}

// setName binds name as the client's uid unless another connection has it.
func setName(ctx context.Context, c *worker.Context, a api.API, old, name string) {
	if name == old {
		notice(c, "you are already %s", name)
		return
	}
	on, err := a.IsUIDOnline(ctx, name)
	if err != nil {
		notice(c, "error: %v", err)
		return
	}
	if on.Value {
		notice(c, "the name %s is taken", name)
		return
	}
	c.BindUID(name)
	notice(c, "you are now %s", name)
	if r := room(c); r != "" && old != "" {
		announce(ctx, c, a, r, old+" is now known as "+name)
	}
}

// join moves the client from its room, if any, to room.
func join(ctx context.Context, c *worker.Context, a api.API, name, r string) {
	old := room(c)
	if old == r {
		notice(c, "you are already in #%s", r)
		return
	}
	if old != "" {
		c.LeaveGroup(old)
		announce(ctx, c, a, old, name+" left #"+old)
	}
	// The join is applied before the announcement (an API call after an
	// action), which leaves the joiner out; it gets its own notice.
	c.JoinGroup(r)
	announce(ctx, c, a, r, name+" joined #"+r)
	notice(c, "you joined #%s", r)
}

// private sends text to every connection bound to the uid to.
func private(ctx context.Context, c *worker.Context, a api.API, name, to, text string) {
	on, err := a.IsUIDOnline(ctx, to)
	if err != nil {
		notice(c, "error: %v", err)
		return
	}
	if !on.Value {
		notice(c, "no one named %s is online", to)
		return
	}
	if err := a.SendToUID(ctx, []string{to}, []byte("[pm from "+name+"] "+text)); err != nil {
		notice(c, "not sent: %v", err)
		return
	}
	c.Send([]byte("[pm to " + to + "] " + text))
}

func listRooms(ctx context.Context, c *worker.Context, a api.API) {
	p, err := a.GetGroupList(ctx, true, api.PageRequest{Limit: maxList})
	if err != nil {
		notice(c, "error: %v", err)
		return
	}
	if len(p.Items) == 0 {
		notice(c, "no rooms yet: /join <room> opens one")
		return
	}
	notice(c, "rooms: %s", joinList(p, "#"))
}

// announce tells the members of room (but the client itself) a notice.
// Errors are not the user's business: a lost announcement is logged by
// nobody and only costs a line.
func announce(ctx context.Context, c *worker.Context, a api.API, room, text string) {
	_ = a.SendToGroup(ctx, []string{room}, []byte("* "+text), c.ClientID())
}

// joinList renders a page as "a, b, c", marking a cut-off list.
func joinList(p api.Page, prefix string) string {
	items := slices.Clone(p.Items)
	slices.Sort(items)
	for i := range items {
		items[i] = prefix + items[i]
	}
	s := strings.Join(items, ", ")
	if p.NextCursor != "" {
		s += ", …"
	}
	if p.Partial {
		s += " (some gateways did not answer)"
	}
	return s
}

// onClose tells the client's room that it left. The Context still has the
// uid and groups the client had.
func onClose(c *worker.Context) {
	name, r := c.UID(), room(c)
	if name == "" || r == "" || c.API() == nil {
		return
	}
	announce(c.Context(), c, c.API(), r, name+" left #"+r)
}
