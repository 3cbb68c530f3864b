// Package webhook serves client events with an HTTP backend instead of a
// bus worker: a Hook joins the workers' queue group like a worker.Worker,
// POSTs each event batch as signed JSON to a URL, and turns the answer's
// actions into the batch's Ack.
//
// # Order and concurrency
//
// A gateway sends a client's next batch only after the previous one was
// acknowledged, and a Hook acknowledges a batch only after the backend
// answered it, so one client's batches reach the backend one at a time and
// in order. Batches of different clients are POSTed in parallel, at most
// Config.MaxInFlight at once per Hook.
//
// # Failures
//
// A transport error, a timeout or a non-2xx status is retried up to
// Config.Retries times with exponential back-off and full jitter. When the
// retries are spent, or at once for an answer that is not valid (not JSON,
// an unknown action, over Config.MaxResponseBytes), the batch is failed:
// none of its actions is applied and it is nacked, so the gateway
// redelivers it at once, within its redelivery bound and dead letter
// (see fail). A backend that cannot be connected to makes the Hook leave
// the queue group until a probe reaches it again: the gateways then hold
// the clients' events (bounded) as they do with no worker.
//
// # Signature
//
// Every request carries X-Gatework-Timestamp (Unix seconds) and
// X-Gatework-Signature: "sha256=" + hex(HMAC-SHA256(secret, timestamp + "."
// + body)). Verify checks one; docs/webhook.md shows the check in Node,
// PHP and Python and the replay window.
package webhook
