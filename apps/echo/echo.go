// Package echo is the built-in demo app that answers every message to its
// sender, byte for byte: `gatework start --app echo` (the default).
//
// A WebSocket text frame comes back as a text frame and a binary frame as
// a binary frame, whatever the bytes; on a TCP listener the message comes
// back framed by the listener's framing (a line for line framing).
package echo

import "github.com/gatework/gatework/worker"

// Handlers returns the echo app. Its OnMessage sends msg back to the
// client that sent it, unchanged; nothing else is handled. The handlers
// are safe for concurrent use and keep no state.
func Handlers() worker.Handlers {
	return worker.Handlers{OnMessage: onMessage}
}

func onMessage(c *worker.Context, msg []byte) {
	if c.Binary() {
		c.SendBinary(msg)
		return
	}
	c.Send(msg)
}
