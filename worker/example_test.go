package worker_test

import (
	"context"
	"log"
	"os"
	"os/signal"

	"github.com/gatework/gatework/api"
	"github.com/gatework/gatework/bus"
	"github.com/gatework/gatework/worker"
)

// A chat worker: clients must bring a token, join the lobby, and every
// message goes to the rest of the lobby.
func Example() {
	// A worker's user may read replies on the worker's inbox prefix only.
	subj, _ := bus.NewSubjects("")
	nc, err := bus.Connect(bus.Options{URL: "nats://127.0.0.1:4222", Name: "chat-worker",
		InboxPrefix: subj.Inbox(bus.RoleWorker)})
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	var cluster api.API // api.New(nc, api.Config{}) in a real program

	w, err := worker.New(nc, cluster, worker.Config{}, worker.Handlers{
		OnWebSocketConnect: func(c *worker.Context, r *worker.Request) {
			user := r.Query.Get("user")
			if r.Query.Get("token") == "" || user == "" {
				c.Reject(401, "token required")
				return
			}
			c.BindUID(user)
			c.JoinGroup("lobby")
			if err := c.SetSession(api.Session{"name": user}); err != nil {
				log.Print(err)
			}
			c.Send([]byte("welcome " + user))
		},
		OnMessage: func(c *worker.Context, msg []byte) {
			// Everyone in the lobby but the sender; API calls act at once.
			if err := c.API().SendToGroup(c.Context(), []string{"lobby"}, msg, c.ClientID()); err != nil {
				log.Printf("client %s: %v", c.ClientID(), err)
			}
		},
		OnClose: func(c *worker.Context) {
			log.Printf("%s (%v) left: %s", c.UID(), c.Session()["name"], c.CloseReason())
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Run until Ctrl-C, then drain: batches in hand finish, new ones go
	// to the other workers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
