package gateway

import "github.com/gatework/gatework/bus"

// This file holds the listener scope of commands (Command.Listeners; the
// API's OnListeners): a scoped command sees only the connections accepted
// by the named listeners.

// scope is the listener filter of one command. The zero value lets every
// connection in.
type scope struct {
	on bool        // the command names listeners
	ls []*listener // the named listeners this gateway has (maybe none)
}

// scopeOf returns cmd's scope. Names this gateway has no listener of are
// ignored (another gateway may have them; the API checks names against
// every live gateway's), so a scope naming only such listeners matches no
// connection here.
func (s *Server) scopeOf(cmd *bus.Command) scope {
	if len(cmd.Listeners) == 0 {
		return scope{}
	}
	sc := scope{on: true}
	for _, l := range s.listeners {
		for _, n := range cmd.Listeners {
			if l.cfg.Name == n {
				sc.ls = append(sc.ls, l)
				break
			}
		}
	}
	return sc
}

// has reports whether c is in the scope.
func (sc scope) has(c *conn) bool {
	if !sc.on {
		return true
	}
	for _, l := range sc.ls {
		if c.l == l {
			return true
		}
	}
	return false
}

// none reports whether the scope matches no connection of this gateway,
// so that a query can answer at once.
func (sc scope) none() bool { return sc.on && len(sc.ls) == 0 }

// inSet counts the members of set in the scope.
func (sc scope) inSet(set map[*conn]struct{}) int {
	if !sc.on {
		return len(set)
	}
	n := 0
	for c := range set {
		if sc.has(c) {
			n++
		}
	}
	return n
}

// inList counts the connections of list in the scope.
func (sc scope) inList(list []*conn) int {
	if !sc.on {
		return len(list)
	}
	n := 0
	for _, c := range list {
		if sc.has(c) {
			n++
		}
	}
	return n
}

// anyInSet reports whether some member of set is in the scope.
func (sc scope) anyInSet(set map[*conn]struct{}) bool {
	if !sc.on {
		return len(set) > 0
	}
	for c := range set {
		if sc.has(c) {
			return true
		}
	}
	return false
}

// anyInList reports whether some connection of list is in the scope.
func (sc scope) anyInList(list []*conn) bool {
	if !sc.on {
		return len(list) > 0
	}
	for _, c := range list {
		if sc.has(c) {
			return true
		}
	}
	return false
}

// scopedConnCount counts the open connections in the scope.
func (s *Server) scopedConnCount(sc scope) int {
	if !sc.on {
		return s.connCount()
	}
	n := 0
	for _, l := range sc.ls {
		n += int(l.open.Load())
	}
	return n
}
