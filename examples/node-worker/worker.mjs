// A gatework worker in Node.js, written from docs/bus-protocol.md only:
// it joins the workers' queue group over NATS, decodes EventBatch with the
// types loaded from bus/gatework.proto, runs the handlers below for each
// event in order, and answers with an Ack carrying the actions.
//
// The app (the same as the Go worker and the webhook backend of the
// conformance kit, test/workerkit):
//   connect            join group "kit", set session {"n":0}
//   websocket_connect  path /reject: reject with 403; query uid=<uid>: bind it
//                      (on a listener with upgrade_hook the event has
//                      beforeUpgrade set and comes before connect: the
//                      reject is the client's HTTP 403, the bind applies
//                      as the 101 goes out)
//   message "cmd:bind:<uid>"  bind uid, answer "bound:<uid>"
//   message "cmd:state"       answer {"uid","groups","session"} as the worker sees them
//   message "cmd:count"       session n+1 (update), answer "n=<n>"
//   message "cmd:slow:<ms>"   wait ms (progress acks meanwhile), answer "slow done attempt=<attempt>"
//   message "cmd:close"       close with the final message "bye"
//   other messages            echoed byte for byte (text as text, binary as binary)
//   a message with a value    (a listener with a codec) answer "value:<the value's JSON>"
//   decode_error       answer "decode_error:<the codec's error>"
//   close              send {"event":"close",...} to uid "observer" over the bus
//
// Environment: GATEWORK_NATS_URL, GATEWORK_NATS_USER,
// GATEWORK_NATS_PASSWORD, GATEWORK_PREFIX (default gw), GATEWORK_PROTO
// (default ../../bus/gatework.proto from this file).
import { connect } from "nats";
import protobuf from "protobufjs";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const protoFile = process.env.GATEWORK_PROTO || path.join(here, "../../bus/gatework.proto");
const root = protobuf.loadSync(protoFile);
const EventBatch = root.lookupType("gatework.bus.v1.EventBatch");
const Ack = root.lookupType("gatework.bus.v1.Ack");
const Command = root.lookupType("gatework.bus.v1.Command");
const E = root.lookupEnum("gatework.bus.v1.EventType").values;
const A = root.lookupEnum("gatework.bus.v1.ActionType").values;
const Op = root.lookupEnum("gatework.bus.v1.Op").values;

const prefix = process.env.GATEWORK_PREFIX || "gw";
const workerId = `node-${process.pid}`;
const log = (...a) => console.error(new Date().toISOString(), workerId, ...a);

// A uid or group name becomes one subject token: "b" + unpadded base64url
// of the name up to 48 bytes, else "h" + hex SHA-256 (bus-protocol.md,
// Routing by interest).
async function token(name) {
  const b = Buffer.from(name, "utf8");
  if (b.length <= 48) return "b" + b.toString("base64url");
  const { createHash } = await import("node:crypto");
  return "h" + createHash("sha256").update(b).digest("hex");
}

const nc = await connect({
  servers: process.env.GATEWORK_NATS_URL || "nats://127.0.0.1:4222",
  user: process.env.GATEWORK_NATS_USER,
  pass: process.env.GATEWORK_NATS_PASSWORD,
  name: workerId,
  // The worker user may read its replies below this prefix only.
  inboxPrefix: `${prefix}.inbox.worker`,
  maxReconnectAttempts: -1,
});

const text = new TextDecoder("utf-8", { fatal: true });
const isUTF8 = (b) => { try { text.decode(b); return true; } catch { return false; } };

// Batches in hand: reply subject -> {delivery}; progress acks go to them.
const inHand = new Map();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// onValue handles a message decoded by the listener's codec: the kit's
// app answers "value:" and the value's JSON.
function onValue(value, send) {
  send(Buffer.from("value:" + JSON.stringify(value)));
}

// onDecodeError handles a message the listener's codec could not decode
// (data as received, err the codec's error): the kit's app answers
// "decode_error:<err>".
function onDecodeError(data, err, send) {
  send(Buffer.from("decode_error:" + err));
}

// handle runs the events of one batch in order and returns the actions.
async function handle(batch) {
  const actions = [];
  const st = batch.state || {};
  // The local view: the batch's state, kept up to date by our actions so
  // that the next event of the same batch sees them.
  const view = {
    uid: st.uid || "",
    groups: [...(st.groups || [])].sort(),
    session: st.session && st.session.length ? JSON.parse(Buffer.from(st.session).toString("utf8")) : null,
  };
  const send = (data, binary = false) => actions.push({ type: A.ACTION_SEND, data, flag: binary });
  const join = (g) => {
    actions.push({ type: A.ACTION_JOIN_GROUP, arg: g });
    if (!view.groups.includes(g)) view.groups = [...view.groups, g].sort();
  };
  const setSession = (obj) => {
    actions.push({ type: A.ACTION_SET_SESSION, data: Buffer.from(JSON.stringify(obj)) });
    view.session = obj;
  };
  const updateSession = (obj) => {
    actions.push({ type: A.ACTION_UPDATE_SESSION, data: Buffer.from(JSON.stringify(obj)) });
    view.session = { ...(view.session || {}), ...obj };
  };
  for (const ev of batch.events) {
    switch (ev.type) {
      case E.EVENT_CONNECT:
        join("kit");
        setSession({ n: 0 });
        break;
      case E.EVENT_WEBSOCKET_CONNECT: {
        // path/query/header values may not be UTF-8: Buffer/strings both work.
        const p = ev.request ? String(ev.request.path) : "";
        if (p === "/reject") actions.push({ type: A.ACTION_REJECT, code: 403, arg: "rejected by node worker" });
        // Bind on connect: ?uid=<uid> in the upgrade request.
        const uid = new URLSearchParams(ev.request ? String(ev.request.query) : "").get("uid");
        if (uid) {
          actions.push({ type: A.ACTION_BIND_UID, arg: uid });
          view.uid = uid;
        }
        break;
      }
      case E.EVENT_MESSAGE: {
        const data = Buffer.from(ev.data || []);
        const s = !ev.binary && isUTF8(data) ? data.toString("utf8") : null;
        // On a listener with a codec other than raw and json, value holds
        // the message as the gateway decoded it, in JSON (field 50).
        const value = ev.value && ev.value.length ? JSON.parse(Buffer.from(ev.value).toString("utf8")) : undefined;
        if (value !== undefined) {
          onValue(value, send);
        } else if (s !== null && s.startsWith("cmd:bind:")) {
          const uid = s.slice("cmd:bind:".length);
          actions.push({ type: A.ACTION_BIND_UID, arg: uid });
          view.uid = uid;
          send(Buffer.from("bound:" + uid));
        } else if (s === "cmd:state") {
          send(Buffer.from(JSON.stringify({ uid: view.uid, groups: view.groups, session: view.session })));
        } else if (s === "cmd:count") {
          const n = ((view.session && view.session.n) || 0) + 1;
          updateSession({ n });
          send(Buffer.from("n=" + n));
        } else if (s !== null && s.startsWith("cmd:slow:")) {
          await sleep(Number(s.slice("cmd:slow:".length)));
          send(Buffer.from("slow done attempt=" + batch.attempt));
        } else if (s === "cmd:close") {
          actions.push({ type: A.ACTION_CLOSE, flag: false, data: Buffer.from("bye") });
        } else {
          send(data, !!ev.binary);
        }
        break;
      }
      case E.EVENT_DECODE_ERROR:
        // A message the listener's codec refused (its decode_error policy
        // is "event"): data is the message as received, error why.
        onDecodeError(Buffer.from(ev.data || []), ev.error || "", send);
        break;
      case E.EVENT_CLOSE: {
        const note = JSON.stringify({
          event: "close", client: batch.client, reason: ev.closeReason,
          uid: st.uid || "", groups: [...(st.groups || [])].sort(),
          session: st.session && st.session.length ? JSON.parse(Buffer.from(st.session).toString("utf8")) : null,
        });
        const cmd = Command.encode(Command.create({
          version: 1, op: Op.OP_SEND_TO_UID, uids: ["observer"], data: Buffer.from(note),
          msgId: randomBytes(6).readUIntBE(0, 6) + 1,
        })).finish();
        nc.publish(`${prefix}.uid.${await token("observer")}`, cmd);
        break;
      }
      default:
        break; // an event type this worker does not know: ignored
    }
  }
  return actions;
}

async function onBatch(msg) {
  let batch;
  try {
    batch = EventBatch.decode(msg.data);
  } catch (err) {
    log("malformed batch dropped:", err.message);
    return;
  }
  if (!msg.reply) return;
  inHand.set(msg.reply, { delivery: batch.delivery, taken: Date.now() });
  let actions = [];
  try {
    actions = await handle(batch);
  } catch (err) {
    // Like the Go worker: a failing handler does not block the client.
    log("handler failed; batch acknowledged anyway:", err.stack || err);
  }
  inHand.delete(msg.reply);
  msg.respond(Ack.encode(Ack.create({ delivery: batch.delivery, actions, worker: workerId })).finish());
}

// Progress: every batch in hand for half a second or more gets a
// progress ack every second, so the gateway does not redeliver it.
const progress = setInterval(() => {
  const now = Date.now();
  for (const [reply, b] of inHand) {
    if (now - b.taken < 500) continue;
    nc.publish(reply, Ack.encode(Ack.create({ delivery: b.delivery, progress: true, worker: workerId })).finish());
  }
}, 1000);

// Only in the queue group: a plain subscription is refused.
const sub = nc.subscribe(`${prefix}.events`, {
  queue: `${prefix}.workers`,
  callback: (err, msg) => {
    if (err) { log("subscription error:", err.message); return; }
    onBatch(msg);
  },
});
await nc.flush();
log("node worker ready on", `${prefix}.events`);
console.log("ready");

// Graceful stop: leave the queue group (new batches go to other workers),
// finish and ack the batches in hand, then close.
let stopping = false;
async function stop(sig) {
  if (stopping) return;
  stopping = true;
  log(`${sig}: draining`);
  await sub.drain();
  while (inHand.size > 0) await sleep(20);
  clearInterval(progress);
  await nc.drain();
  log("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
