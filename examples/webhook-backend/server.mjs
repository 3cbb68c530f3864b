// An example gatework webhook backend in plain Node.js (node:http, no
// dependencies): the events of every client arrive as signed JSON batches
// (docs/webhook.md), and the answer lists the actions for that client.
// It serves the same app as examples/node-worker (the conformance kit's
// app, test/workerkit): see the list at the top of that worker.
//
// Environment: PORT (default 8090) and HOST (127.0.0.1),
// GATEWORK_WEBHOOK_SECRET (required), GATEWORK_API_URL (the node's HTTP
// API, default http://127.0.0.1:7280; for the close notes),
// GATEWORK_API_TOKEN (optional bearer token of the API).
import http from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";

const secret = process.env.GATEWORK_WEBHOOK_SECRET;
if (!secret) {
  console.error("GATEWORK_WEBHOOK_SECRET is required");
  process.exit(2);
}
const apiURL = (process.env.GATEWORK_API_URL || "http://127.0.0.1:7280").replace(/\/$/, "");
const apiToken = process.env.GATEWORK_API_TOKEN || "";
const maxBody = 16 << 20;
const apiTimeoutMs = 5_000; // a call to the node's API that takes longer fails the batch (500: retried)
const drainMs = 8_000; // on SIGTERM, requests still running after this are cut (the gateways redeliver)
const replayWindowSec = 300;

// verify checks X-Gatework-Signature = "sha256=" + hex(HMAC-SHA256(secret,
// timestamp + "." + body)) and that the timestamp is within 5 minutes.
function verify(req, body) {
  const ts = req.headers["x-gatework-timestamp"] || "";
  const sig = req.headers["x-gatework-signature"] || "";
  if (!/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > replayWindowSec) return false;
  const want = "sha256=" + createHmac("sha256", secret).update(ts + ".").update(body).digest("hex");
  return sig.length === want.length && timingSafeEqual(Buffer.from(sig), Buffer.from(want));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// callAPI calls one method of the node's HTTP API.
async function callAPI(method, args) {
  const headers = { "Content-Type": "application/json" };
  if (apiToken) headers.Authorization = "Bearer " + apiToken;
  const res = await fetch(`${apiURL}/api/${method}`, {
    method: "POST", headers, body: JSON.stringify(args), signal: AbortSignal.timeout(apiTimeoutMs),
  });
  if (!res.ok) throw new Error(`${method}: ${res.status} ${await res.text()}`);
}

// handle runs the events of one batch in order and returns the actions.
async function handle(batch) {
  const actions = [];
  const st = batch.state;
  const view = { uid: st.uid, groups: [...st.groups].sort(), session: st.session };
  for (const ev of batch.events) {
    switch (ev.type) {
      case "connect":
        actions.push({ type: "join", group: "kit" }, { type: "session_set", session: { n: 0 } });
        if (!view.groups.includes("kit")) view.groups = [...view.groups, "kit"].sort();
        view.session = { n: 0 };
        break;
      case "websocket_connect":
        if (ev.request.path === "/reject") actions.push({ type: "reject", code: 403, reason: "rejected by webhook" });
        {
          const uid = new URLSearchParams(ev.request.query).get("uid"); // bind on connect
          if (uid) {
            actions.push({ type: "bind", uid });
            view.uid = uid;
          }
        }
        break;
      case "decode_error": // a message the listener's codec refused; ev.error says why
        actions.push({ type: "send", data: "decode_error:" + ev.error });
        break;
      case "message": {
        const s = ev.data; // set for valid UTF-8 text; else data_base64
        if (ev.value !== undefined) { // decoded by the listener's codec
          actions.push({ type: "send", data: "value:" + JSON.stringify(ev.value) });
        } else if (s !== undefined && s.startsWith("cmd:bind:")) {
          const uid = s.slice("cmd:bind:".length);
          actions.push({ type: "bind", uid }, { type: "send", data: "bound:" + uid });
          view.uid = uid;
        } else if (s === "cmd:state") {
          actions.push({ type: "send", data: JSON.stringify({ uid: view.uid, groups: view.groups, session: view.session }) });
        } else if (s === "cmd:count") {
          const n = ((view.session && view.session.n) || 0) + 1;
          actions.push({ type: "session_update", session: { n } }, { type: "send", data: "n=" + n });
          view.session = { ...(view.session || {}), n };
        } else if (s !== undefined && s.startsWith("cmd:slow:")) {
          await sleep(Number(s.slice("cmd:slow:".length)));
          actions.push({ type: "send", data: "slow done attempt=" + batch.attempt });
        } else if (s === "cmd:close") {
          actions.push({ type: "close", data: "bye" });
        } else if (s !== undefined) {
          actions.push({ type: "send", data: s });
        } else {
          actions.push({ type: "send", data_base64: ev.data_base64, binary: ev.binary });
        }
        break;
      }
      case "close":
        await callAPI("sendToUid", {
          uid: "observer",
          message: JSON.stringify({ event: "close", client: batch.client, reason: ev.close_reason,
            uid: st.uid, groups: [...st.groups].sort(), session: st.session }),
        });
        break;
    }
  }
  return actions;
}

const server = http.createServer((req, res) => {
  inProgress++;
  res.on("close", () => inProgress--);
  if (stopping) res.shouldKeepAlive = false; // while stopping, no connection goes back to idle
  if (req.method !== "POST") {
    res.writeHead(405).end();
    return;
  }
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size > maxBody) req.destroy();
    else chunks.push(c);
  });
  req.on("end", async () => {
    const body = Buffer.concat(chunks);
    if (!verify(req, body)) {
      res.writeHead(401).end("bad signature");
      return;
    }
    try {
      const batch = JSON.parse(body.toString("utf8"));
      if (batch.probe) {
        res.writeHead(204).end();
        return;
      }
      const actions = await handle(batch);
      if (stopping) res.shouldKeepAlive = false; // a batch that began before SIGTERM: close after its answer
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ actions }));
    } catch (err) {
      console.error("batch failed:", err);
      res.writeHead(500).end(); // the hook retries, then the gateway redelivers
    }
  });
});
server.keepAliveTimeout = 65_000;
const port = Number(process.env.PORT || 8090);
server.listen(port, process.env.HOST || "127.0.0.1", () => {
  console.error(`webhook backend on http://${process.env.HOST || "127.0.0.1"}:${server.address().port}/`);
  console.log("ready");
});
// Graceful stop: no new connections, answer the requests in progress
// (each connection closes after its answer instead of going back to the
// keep-alive pool, where the hook could send it another batch), close
// the idle connections; requests still running after drainMs are cut
// and their batches redelivered by the gateways.
let stopping = false;
let inProgress = 0; // requests whose answer has not been sent
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    server.close(() => process.exit(0));
    setInterval(() => server.closeIdleConnections(), 50).unref();
    setTimeout(() => {
      console.error(`stop: ${inProgress} request(s) still running after ${drainMs} ms: cut (the gateways redeliver their batches)`);
      server.closeAllConnections();
      process.exit(0);
    }, drainMs).unref();
  });
}
