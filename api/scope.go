package api

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gatework/gatework/bus"
)

// This file holds listener scoping (imi's $serverName argument): a view of
// the API that sees only the connections of some listeners.

// ErrUnknownListener: a listener scope names a listener that no live
// gateway has. The error is an *UnknownListenerError.
var ErrUnknownListener = errors.New("api: unknown listener")

// UnknownListenerError names a listener of a scope that no live gateway
// has, with the names the live gateways have.
type UnknownListenerError struct {
	Name  string   // the unknown name
	Known []string // the listener names of the live gateways, sorted
}

// Error describes the failure.
func (e *UnknownListenerError) Error() string {
	return fmt.Sprintf("api: unknown listener %q (live gateways have: %s)", e.Name, strings.Join(e.Known, ", "))
}

// Unwrap returns ErrUnknownListener.
func (e *UnknownListenerError) Unwrap() error { return ErrUnknownListener }

// MaxScopeListeners bounds the listener names of one scope.
const MaxScopeListeners = 64

// OnListeners returns a view of c that sees only the connections accepted
// by the listeners named (ListenerConfig.Name on the gateways): sends
// reach only them, counts and lists count and list only them, and a
// client command (bind, session, close, getClientInfo, …) on a client of
// another listener finds no such client (ErrNotFound; isOnline false).
// No names means every listener, as c. The view shares c's connection
// and state: closing either closes both.
//
// The names are checked at each call against the listeners the live
// gateways state in their heartbeats: a name none of them has fails the
// call with an *UnknownListenerError (ErrUnknownListener) before touching
// the bus. When no live gateway has stated its listeners (none is up, or
// the Client has not heard one yet: within a heartbeat interval of New),
// the names are not checked and the call goes out; a gateway without
// such a listener then matches no connection.
func (c *Client) OnListeners(names ...string) API {
	if len(names) == 0 {
		return &Client{core: c.core}
	}
	return &Client{core: c.core, scope: slices.Clone(names)}
}

// applyScope checks the Client's scope and sets it on cmd.
func (c *Client) applyScope(cmd *bus.Command) error {
	if len(c.scope) == 0 {
		return nil
	}
	if len(c.scope) > MaxScopeListeners {
		return fmt.Errorf("%w: %d listeners in a scope, at most %d", ErrInvalidArgument, len(c.scope), MaxScopeListeners)
	}
	known, stated := c.members.Listeners()
	for _, n := range c.scope {
		if n == "" {
			return fmt.Errorf("%w: empty listener name", ErrInvalidArgument)
		}
		if _, ok := slices.BinarySearch(known, n); stated && !ok {
			return &UnknownListenerError{Name: n, Known: known}
		}
	}
	cmd.Listeners = c.scope
	return nil
}
