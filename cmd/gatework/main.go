// Command gatework runs a gatework node: `gatework start` serves WebSocket
// clients on 127.0.0.1:7272, line-framed TCP clients on 127.0.0.1:7273 and
// the HTTP API on 127.0.0.1:7280, with the echo demo app as the worker
// (--app chat for the chat room, --app none for workers of your own).
// `gatework --help` lists the commands.
package main

import (
	"os"

	"github.com/gatework/gatework/apps/chat"
	"github.com/gatework/gatework/apps/echo"
	"github.com/gatework/gatework/cli"
)

func main() {
	os.Exit(cli.Main(
		cli.App{Name: "echo", Description: "answers every message to its sender", Handlers: echo.Handlers()},
		cli.App{Name: "chat", Description: "a chat room: /name, /join, /msg, /who", Handlers: chat.Handlers()},
	))
}
