// Package testapp is the app that the end-to-end tests run, both in the
// test process (node.WorkerConfig.Handlers) and in the testworker program
// (a worker in another process). Its OnMessage interprets simple commands,
// so that a test client can drive handler-side calls over its own socket.
//
// Commands are messages that start with "/"; anything else is echoed back
// (as a binary frame if it arrived as one, otherwise with the gateway's
// automatic choice):
//
//	/who                 reply a JSON Who: the client as the handler sees it
//	/bind <uid>          Context.BindUID
//	/unbind              Context.UnbindUID
//	/join <group>        Context.JoinGroup
//	/leave <group>       Context.LeaveGroup
//	/session <json>      Context.SetSession
//	/update <json>       Context.UpdateSession
//	/delsession          Context.DeleteSession
//	/inc                 add 1 to the session's "n" (UpdateSession)
//	/multi <uid> <group> BindUID and JoinGroup, then reply Who from the same
//	                     handler (the local view already shows both)
//	/close [msg]         send msg (if any), then Context.Close (graceful)
//	/closeforce          Context.CloseForce
//	/reject <code> <why> Context.Reject
//	/b64 <base64>        Context.Send of the decoded bytes
//	/bin <text>          Context.SendBinary
//	/worker              reply "worker <Config.WorkerID>"
//	/count               reply "count <n>" from API.GetClientCount
//	/tell <uid> <msg>    API.SendToUID
//	/closeuid <uid> <msg> API.CloseUID (graceful), msg last
//	/closeclient <id> <msg> API.CloseClientWith (graceful), msg last
//	/sleep <ms> <text>   sleep, then reply "<text> attempt=<n>"
//	/block               attempt 1: API.SendToClient(self, "blocking"), then
//	                     block until the worker gives up its handlers;
//	                     later attempts: reply "unblocked attempt=<n>"
//
// A WebSocket client whose upgrade request has the query "reject=<code>" is
// rejected with that code and the reason "no"; "uid=<uid>" binds it;
// "remember=1" stores the request (method, path, query, host, the X-Test
// header, the cookie "c") in its session.
//
// OnClose reports what it saw (Closed) to Config.OnClose, and sends
// "closed <json of Closed>" to the uid "observer" through the API.
package testapp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/worker"
)

// ObserverUID is the uid to which OnClose reports closed clients.
const ObserverUID = "observer"

// Config tunes the app. The zero value works.
type Config struct {
	// Jitter: each message waits a random time in [0, Jitter) before it is
	// handled, to shuffle the interleaving of clients; 0 means none.
	Jitter time.Duration
	// AutoJoin is a group that every client joins in OnConnect; "" means
	// none.
	AutoJoin string
	// OnClose, if set, is called from OnClose (concurrently for different
	// clients).
	OnClose func(Closed)
	// WorkerID is the answer to /worker.
	WorkerID string
	// OnMessage, if set, is called with every message before it is
	// handled (concurrently for different clients).
	OnMessage func(client string, msg []byte)
}

// Who is the answer to /who: the client as its handler sees it.
type Who struct {
	Client   string      `json:"client"`
	UID      string      `json:"uid"`
	Groups   []string    `json:"groups"`
	Session  api.Session `json:"session"`
	Attempt  int         `json:"attempt"`
	Listener string      `json:"listener"`
	Protocol string      `json:"protocol"`
	Gateway  string      `json:"gateway"`
}

// Closed is what OnClose saw of a client.
type Closed struct {
	Client  string      `json:"client"`
	Reason  string      `json:"reason"`
	UID     string      `json:"uid"`
	Groups  []string    `json:"groups"`
	Session api.Session `json:"session"`
}

// Handlers returns the app's handlers.
func Handlers(cfg Config) worker.Handlers {
	return worker.Handlers{
		OnConnect: func(c *worker.Context) {
			if cfg.AutoJoin != "" {
				c.JoinGroup(cfg.AutoJoin)
			}
		},
		OnWebSocketConnect: func(c *worker.Context, r *worker.Request) {
			if code := r.Query.Get("reject"); code != "" {
				n, _ := strconv.Atoi(code)
				c.Reject(n, "no")
				return
			}
			if uid := r.Query.Get("uid"); uid != "" {
				c.BindUID(uid)
			}
			if r.Query.Get("remember") != "" {
				cookie := ""
				for _, ck := range r.Cookies() {
					if ck.Name == "c" {
						cookie = ck.Value
					}
				}
				_ = c.UpdateSession(api.Session{
					"method": r.Method, "path": r.Path, "query": r.RawQuery, "host": r.Host,
					"header": r.Header.Get("X-Test"), "cookie": cookie, "event": c.Event().String(),
				})
			}
		},
		OnMessage: func(c *worker.Context, msg []byte) {
			if cfg.OnMessage != nil {
				cfg.OnMessage(c.ClientID(), msg)
			}
			if cfg.Jitter > 0 {
				time.Sleep(rand.N(cfg.Jitter))
			}
			if string(msg) == "/worker" {
				c.Send([]byte("worker " + cfg.WorkerID))
				return
			}
			onMessage(c, msg)
		},
		OnClose: func(c *worker.Context) {
			cl := Closed{
				Client:  c.ClientID(),
				Reason:  c.CloseReason(),
				UID:     c.UID(),
				Groups:  c.Groups(),
				Session: c.Session(),
			}
			if cfg.OnClose != nil {
				cfg.OnClose(cl)
			}
			if a := c.API(); a != nil && cl.UID != ObserverUID {
				b, _ := json.Marshal(cl)
				ctx, cancel := context.WithTimeout(c.Context(), 2*time.Second)
				defer cancel()
				_ = a.SendToUID(ctx, []string{ObserverUID}, append([]byte("closed "), b...))
			}
		},
	}
}

func who(c *worker.Context) []byte {
	info := c.Info()
	b, _ := json.Marshal(Who{
		Client:   c.ClientID(),
		UID:      c.UID(),
		Groups:   c.Groups(),
		Session:  c.Session(),
		Attempt:  c.Attempt(),
		Listener: info.Listener,
		Protocol: info.Protocol,
		Gateway:  info.Gateway,
	})
	return b
}

func onMessage(c *worker.Context, msg []byte) {
	if len(msg) == 0 || msg[0] != '/' {
		if c.Binary() {
			c.SendBinary(msg)
		} else {
			c.Send(msg)
		}
		return
	}
	cmd, arg, _ := strings.Cut(string(msg[1:]), " ")
	switch cmd {
	case "who":
		c.Send(who(c))
	case "bind":
		c.BindUID(arg)
	case "unbind":
		c.UnbindUID()
	case "join":
		c.JoinGroup(arg)
	case "leave":
		c.LeaveGroup(arg)
	case "session", "update":
		var s api.Session
		if err := json.Unmarshal([]byte(arg), &s); err != nil {
			c.Send([]byte("error " + err.Error()))
			return
		}
		if cmd == "session" {
			_ = c.SetSession(s)
		} else {
			_ = c.UpdateSession(s)
		}
	case "delsession":
		c.DeleteSession()
	case "inc":
		n, _ := c.Session()["n"].(float64)
		_ = c.UpdateSession(api.Session{"n": n + 1})
	case "multi":
		uid, group, _ := strings.Cut(arg, " ")
		c.BindUID(uid)
		c.JoinGroup(group)
		c.Send(who(c))
	case "close":
		if arg != "" {
			c.Send([]byte(arg))
		}
		c.Close()
	case "closeforce":
		c.CloseForce()
	case "reject":
		code, why, _ := strings.Cut(arg, " ")
		n, _ := strconv.Atoi(code)
		c.Reject(n, why)
	case "b64":
		b, err := base64.StdEncoding.DecodeString(arg)
		if err != nil {
			c.Send([]byte("error " + err.Error()))
			return
		}
		c.Send(b)
	case "bin":
		c.SendBinary([]byte(arg))
	case "count":
		n, err := c.API().GetClientCount(c.Context())
		if err != nil {
			c.Send([]byte("error " + err.Error()))
			return
		}
		c.Send(fmt.Appendf(nil, "count %d", n.Value))
	case "tell":
		uid, text, _ := strings.Cut(arg, " ")
		if err := c.API().SendToUID(c.Context(), []string{uid}, []byte(text)); err != nil {
			c.Send([]byte("error " + err.Error()))
		}
	case "closeclient", "closeuid":
		// The API's closes with a final message, from a handler: "/closeuid
		// <uid> <message>", "/closeclient <client id> <message>".
		who, text, _ := strings.Cut(arg, " ")
		var err error
		if cmd == "closeuid" {
			err = c.API().CloseUID(c.Context(), who, false, []byte(text))
		} else {
			err = c.API().CloseClientWith(c.Context(), who, false, []byte(text))
		}
		if err != nil {
			c.Send([]byte("error " + err.Error()))
		}
	case "sleep":
		ms, text, _ := strings.Cut(arg, " ")
		d, _ := strconv.Atoi(ms)
		select {
		case <-time.After(time.Duration(d) * time.Millisecond):
		case <-c.Context().Done():
		}
		c.Send(fmt.Appendf(nil, "%s attempt=%d", text, c.Attempt()))
	case "block":
		if c.Attempt() > 1 {
			c.Send(fmt.Appendf(nil, "unblocked attempt=%d", c.Attempt()))
			return
		}
		_ = c.API().SendToClient(c.Context(), c.ClientID(), []byte("blocking"))
		<-c.Context().Done()
	default:
		c.Send([]byte("unknown command " + cmd))
	}
}
