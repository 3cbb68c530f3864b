// Package worker is the business-code entry point: a program fills in
// Handlers, and a Worker runs them for every client event that the gateways
// publish on the bus.
//
// # Delivery
//
// Gateways publish each client's events in batches (bus.EventBatch) to the
// workers' NATS queue group, so every batch reaches exactly one worker
// process. A gateway sends a client's next batch only after the previous one
// was acknowledged, so the events of one client reach handlers in order and
// one at a time; batches of different clients run concurrently, up to
// Config.Concurrency per process.
//
// Delivery is at least once. While a batch is in hand (running or waiting
// for a free goroutine) the worker tells the gateway so every
// Config.ProgressInterval; when it is done it answers with a final Ack that
// carries the actions the handlers queued for the batch's client. A worker
// that dies mid-batch stops answering, and the gateway redelivers the batch
// to another worker after its timeout and a back-off: a handler can
// therefore see an event twice, and Context.Attempt then reports more than
// 1. A batch that does not decode, and the batches that Stop abandons when
// its deadline passes, are nacked: the gateway publishes them again at once
// instead of waiting for the timeout. A gateway delivers a batch a bounded
// number of times (gateway.Config.MaxDeliveries), then gives up on it
// (dead letter, see docs/bus-protocol.md) and goes on with the client's
// next events.
//
// # Actions
//
// Changes a handler makes to its own client through the Context (Send,
// Close, BindUID, JoinGroup, SetSession, Reject, …) are queued and sent in
// the final Ack; the gateway applies them in order before the client's next
// batch, so the next event of the client sees them. They are also applied at
// once to the Context's local view: UID, Groups and Session reflect them in
// the same handler and in the following events of the same batch. Anything
// else (other clients, uids, groups, cluster-wide queries) goes through
// Context.API, which acts immediately, in order with the actions: before
// an API call, the actions queued so far are sent to the gateway in a
// progress Ack and applied (one round trip, only when some are waiting), so
// the client sees a handler's actions and API sends in the order the
// handler made them, and the call sees the actions (a join, a session).
//
// # Bounds
//
// At most Config.Concurrency batches run at once, each on a goroutine of a
// pool that grows on demand up to that bound. Up to Config.Backlog further
// batches (Config.BacklogBytes of payload) wait in the worker for a free
// goroutine and are reported as in progress meanwhile. A batch that arrives
// while the backlog is full is dropped and counted as Stats.Dropped ("slow
// worker"); the gateway redelivers it after its timeout and back-off (it is
// not nacked: that would bring it back at once while the worker is still
// behind), and holds back its further batches meanwhile (its in-flight
// window shrinks). A handler that
// panics is recovered, logged with the stack and counted, and its batch is
// acknowledged anyway, so that a poison event cannot loop between workers
// forever.
package worker
