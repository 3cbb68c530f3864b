// Node `ws` client with permessage-deflate against a gatework listener with
// compression on (see TestNodeWSDeflate):
//   env WS_URL   ws://host:port/ of the compression listener
//   env BIG      the JSON message the Go test sends to everyone once READY
// Checks that the extension is negotiated, that compressed messages of
// every size are echoed byte-exact both ways, that the broadcast arrives,
// and that the server's messages came compressed (socket bytes read well
// under the message bytes). Prints "READY", then "RESULT <json>".
import { createRequire } from 'node:module';
import WebSocket from 'ws';

const wsVersion = createRequire(import.meta.url)('ws/package.json').version;
const url = process.env.WS_URL;
const big = process.env.BIG;
const waitMs = 10000;
const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok: Boolean(ok), detail: String(detail) });
}
function finish(code) {
  const res = { client: `ws ${wsVersion} on node ${process.version}`, checks };
  process.stdout.write('RESULT ' + JSON.stringify(res) + '\n', () => process.exit(code));
}
const overall = setTimeout(() => {
  check('script finished in time', false, 'gave up after 60s');
  finish(1);
}, 60000);

const queue = [];
let wake = null;
// threshold 0: the client compresses every message, short ones included.
const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
ws.on('message', (data, isBinary) => {
  queue.push({ data: Buffer.from(data), isBinary });
  if (wake) { const w = wake; wake = null; w(); }
});
ws.on('error', (err) => { check('no socket error', false, err.message); });

async function next(what) {
  const deadline = Date.now() + waitMs;
  while (queue.length === 0) {
    const left = deadline - Date.now();
    if (left <= 0 || ws.readyState === WebSocket.CLOSED) throw new Error('timeout or closed waiting for ' + what);
    await new Promise((resolve) => { const t = setTimeout(resolve, left); wake = () => { clearTimeout(t); resolve(); }; });
  }
  return queue.shift();
}

async function run(name, fn) {
  try { check(name, true, await fn()); } catch (err) { check(name, false, err && err.message ? err.message : err); }
}

function json(n) {
  const rows = [];
  for (let i = 0; rows.join(',').length < n; i++) rows.push(JSON.stringify({ symbol: 'SYM' + (i % 50), bid: 100 + (i % 7) / 8, ask: 101 + (i % 5) / 4, size: i % 300 }));
  return '[' + rows.join(',') + ']';
}

async function main() {
  await run('connect', () => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('open timeout')), waitMs);
    ws.once('open', () => { clearTimeout(t); resolve(); });
  }));
  await run('permessage-deflate negotiated', async () => {
    if (!ws.extensions.includes('permessage-deflate')) throw new Error('extensions: ' + JSON.stringify(ws.extensions));
    return ws.extensions;
  });
  let sent = 0;
  const before = ws._socket.bytesRead;
  await run('compressed text echoed byte-exact', async () => {
    const payloads = ['hi', '', 'κόσμε 中文 😀', json(1000), json(20000), json(60000)];
    for (const p of payloads) {
      ws.send(p);
      sent += Buffer.byteLength(p);
      const m = await next('echo of ' + p.length + ' chars');
      if (m.isBinary || m.data.toString() !== p) throw new Error(`echo of ${p.length} chars differs (${m.data.length} bytes, binary=${m.isBinary})`);
    }
    return payloads.length + ' messages';
  });
  await run('compressed binary echoed byte-exact', async () => {
    const b = Buffer.alloc(30000);
    for (let i = 0; i < b.length; i++) b[i] = (i * 7) % 251 < 40 ? 0 : i % 13;
    ws.send(b);
    sent += b.length;
    const m = await next('binary echo');
    if (!m.isBinary || !m.data.equals(b)) throw new Error('binary echo differs');
  });
  await run("the server's messages arrive compressed", async () => {
    const read = ws._socket.bytesRead - before;
    if (read * 3 > sent) throw new Error(`${read} socket bytes for ${sent} message bytes`);
    return `${read} socket bytes for ${sent} message bytes`;
  });
  process.stdout.write('READY\n');
  await run('compressed broadcast from the HTTP API', async () => {
    const m = await next('broadcast');
    if (m.data.toString() !== big) throw new Error(`broadcast differs: ${m.data.length} bytes`);
    return m.data.length + ' bytes';
  });
  await run('client close 1000', () => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('close timeout')), waitMs);
    ws.once('close', (code) => { clearTimeout(t); code === 1000 ? resolve() : reject(new Error('code ' + code)); });
    ws.close(1000);
  }));
}

main().then(() => { clearTimeout(overall); finish(0); }, (err) => { check('script ran', false, err.stack); finish(1); });
