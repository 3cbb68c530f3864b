// Package workerkit is the bus protocol's conformance kit: it starts a
// gatework node with no worker of its own, lets a worker under test
// connect (a bus worker in any language, or a webhook backend behind the
// node's webhook mode) and checks it the same way whatever its language:
// byte-exact echo of text, binary and empty messages, each client's order,
// at-least-once delivery after the worker is killed with SIGKILL, a
// graceful drain on SIGTERM, session visibility across events, the close
// event's contents, the actions of acks (bind on connect and later, join,
// session, close with a final message, reject), a reject before the
// upgrade on a listener with upgrade_hook (an HTTP 403 with the reason as
// the body; an accepted upgrade has its bind applied before the connect
// event) and progress acks of a slow handler.
//
// The worker under test serves the kit's app, described at the top of
// examples/node-worker/worker.mjs. Its command line comes from
// GATEWORK_KIT_WORKER (a bus worker: it gets GATEWORK_NATS_URL,
// GATEWORK_NATS_USER, GATEWORK_NATS_PASSWORD and GATEWORK_PREFIX) or
// GATEWORK_KIT_WEBHOOK (a webhook backend: it gets PORT,
// GATEWORK_WEBHOOK_SECRET and GATEWORK_API_URL), split on spaces, with
// $NAME of those variables expanded (quote it from the shell). When
// neither is set the kit runs against the Go worker (package worker, this
// test binary run again as the worker), the Node worker
// (examples/node-worker) and the webhook mode with the example Node
// backend (examples/webhook-backend). The Node ones need node and the
// packages of setup.sh; without them they are skipped, and fail under
// CI=true.
package workerkit
