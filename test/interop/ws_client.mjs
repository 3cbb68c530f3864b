// Node `ws` client checks against a gatework node running the interop
// test app (see main_test.go). Driven by TestNodeWS:
//   env WS_URL       ws://host:port/ of the node's WebSocket listener
//   env MAX_MESSAGE  the listener's max_message
//   env CLIENTS      how many clients to connect (default 8)
// Prints "READY" once every client is bound and in its group (the Go test
// then pushes messages through the HTTP API), then "RESULT <json>" with
// the named checks, and exits. Every wait is bounded.
import { createRequire } from 'node:module';
import WebSocket from 'ws';

const wsVersion = createRequire(import.meta.url)('ws/package.json').version;

const url = process.env.WS_URL;
const maxMessage = Number(process.env.MAX_MESSAGE);
const nClients = Number(process.env.CLIENTS || 8);
const waitMs = 10000;

const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok: Boolean(ok), detail: String(detail) });
}

function finish(code) {
  const res = { client: `ws ${wsVersion} on node ${process.version}`, checks };
  process.stdout.write('RESULT ' + JSON.stringify(res) + '\n', () => process.exit(code));
}

// The whole script is bounded: report what was checked so far and fail.
const overall = setTimeout(() => {
  check('script finished in time', false, 'gave up after 60s');
  finish(1);
}, 60000);

function hex(buf) {
  return Buffer.from(buf).toString('hex');
}

function show(buf) {
  const b = Buffer.from(buf);
  return b.length > 40 ? `${b.length} bytes ${hex(b.subarray(0, 20))}…` : `${b.length} bytes ${hex(b)}`;
}

// Client wraps a ws connection with a queue of received messages.
class Client {
  constructor(name) {
    this.name = name;
    this.queue = [];
    this.waiter = null;
    this.pongs = [];
    this.ws = new WebSocket(url);
    this.ws.on('message', (data, isBinary) => {
      this.queue.push({ data: Buffer.from(data), isBinary });
      this.wake();
    });
    this.ws.on('pong', (data) => {
      this.pongs.push(Buffer.from(data));
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.wake();
      });
    });
    this.ws.on('error', (err) => {
      this.error = err;
      this.wake();
    });
  }

  wake() {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w();
    }
  }

  async opened() {
    if (this.ws.readyState === WebSocket.OPEN) return;
    await bounded(new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    }), `${this.name} open`);
  }

  // until waits for cond() to hold, bounded.
  async until(cond, what) {
    const deadline = Date.now() + waitMs;
    while (!cond()) {
      if (this.ws.readyState === WebSocket.CLOSED && !cond()) {
        throw new Error(`${this.name}: connection closed while waiting for ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: timeout waiting for ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  async next(what = 'a message') {
    await this.until(() => this.queue.length > 0, what);
    return this.queue.shift();
  }

  async closeEvent() {
    return bounded(this.closed, `${this.name} close event`);
  }
}

function bounded(p, what, ms = waitMs) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// expectText checks that the next message is a text frame with exactly
// the UTF-8 bytes of s.
async function expectText(c, s, what) {
  const m = await c.next(what);
  const want = Buffer.from(s, 'utf8');
  if (m.isBinary || !m.data.equals(want)) {
    throw new Error(`${what}: got ${m.isBinary ? 'binary' : 'text'} ${show(m.data)}, want text ${show(want)}`);
  }
}

async function expectBinary(c, bytes, what) {
  const m = await c.next(what);
  const want = Buffer.from(bytes);
  if (!m.isBinary || !m.data.equals(want)) {
    throw new Error(`${what}: got ${m.isBinary ? 'binary' : 'text'} ${show(m.data)}, want binary ${show(want)}`);
  }
}

// run records one named check: ok unless fn throws.
async function run(name, fn) {
  try {
    const detail = await fn();
    check(name, true, detail || '');
  } catch (err) {
    check(name, false, err && err.message ? err.message : err);
  }
}

const textPayloads = [
  'hello',
  'trailing NUL\u0000',
  '\u0000',
  '  leading and trailing spaces  ',
  ' ',
  'tab\t',
  'CRLF\r\n',
  '\r\n',
  '\n',
  'a\r\nb\r\n\r\n',
  'κόσμε 中文 😀',
  'x'.repeat(60000),
];

const binaryPayloads = [
  [0x00],
  [0x00, 0x01, 0x02, 0x00],
  [0xff, 0xfe, 0xfd],
  [0xc0, 0xaf, 0xed, 0xa0, 0x80], // invalid UTF-8 sequences
  Buffer.from('looks like text\r\n\u0000'),
  Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff)),
  Buffer.alloc(60000, 0xab),
];

async function main() {
  const clients = Array.from({ length: nClients }, (_, i) => new Client(`client ${i}`));
  const groupOf = (i) => (i < nClients - 1 ? 'room' : 'other');

  await run('connect', async () => {
    await Promise.all(clients.map((c) => c.opened()));
    return `${nClients} clients`;
  });

  await run('bind and join', async () => {
    await Promise.all(clients.map(async (c, i) => {
      c.ws.send(`bind u${i}`);
      await expectText(c, `bound u${i}`, `${c.name} bind`);
      c.ws.send(`join ${groupOf(i)}`);
      await expectText(c, `joined ${groupOf(i)}`, `${c.name} join`);
    }));
  });

  const c0 = clients[0];
  await run('echo text byte-exact', async () => {
    for (const s of textPayloads) {
      c0.ws.send(s);
      await expectText(c0, s, `echo of ${JSON.stringify(s.slice(0, 20))}`);
    }
    return `${textPayloads.length} messages`;
  });

  await run('echo binary byte-exact', async () => {
    for (const b of binaryPayloads) {
      c0.ws.send(Buffer.from(b));
      await expectBinary(c0, b, `echo of binary ${show(b)}`);
    }
    return `${binaryPayloads.length} messages`;
  });

  await run('invalid UTF-8 from the server arrives as binary', async () => {
    c0.ws.send('bad-utf8');
    await expectBinary(c0, [0xff, 0xfe, 0x6f, 0x6b], 'answer to bad-utf8');
  });

  await run('ping answered by identical pong', async () => {
    const data = Buffer.from([0x70, 0x00, 0xff, 0x0d, 0x0a]);
    c0.ws.ping(data);
    await c0.until(() => c0.pongs.length > 0, 'pong');
    const got = c0.pongs.shift();
    if (!got.equals(data)) throw new Error(`pong ${show(got)}, want ${show(data)}`);
  });

  await run('per-client order of 100 messages', async () => {
    await Promise.all(clients.map(async (c, i) => {
      for (let k = 0; k < 100; k++) {
        if (k % 10 === 9) c.ws.send(Buffer.from(`order ${i} ${k}`));
        else c.ws.send(`order ${i} ${k}`);
      }
      for (let k = 0; k < 100; k++) {
        const m = await c.next(`${c.name} order message ${k}`);
        const want = `order ${i} ${k}`;
        if (m.data.toString() !== want || m.isBinary !== (k % 10 === 9)) {
          throw new Error(`${c.name}: message ${k} is ${m.isBinary ? 'binary' : 'text'} ${JSON.stringify(m.data.toString())}, want ${JSON.stringify(want)}`);
        }
      }
    }));
    return `${nClients} clients × 100`;
  });

  // The Go test now sends "group hello" to room, 00 ff 80 to all, and
  // "all hello" to all, in that order.
  process.stdout.write('READY\n');
  await run('sendToGroup and sendToAll from the HTTP API', async () => {
    await Promise.all(clients.map(async (c, i) => {
      if (groupOf(i) === 'room') await expectText(c, 'group hello', `${c.name} group message`);
      await expectBinary(c, [0x00, 0xff, 0x80], `${c.name} binary sendToAll`);
      await expectText(c, 'all hello', `${c.name} text sendToAll`);
    }));
    return `${nClients - 1} in room, 1 outside`;
  });

  await run('client close 1000 is answered with 1000', async () => {
    const c = clients[1];
    c.ws.close(1000, 'bye');
    const ev = await c.closeEvent();
    if (ev.code !== 1000) throw new Error(`close code ${ev.code} ${ev.reason}`);
  });

  await run('client close 4001 is answered', async () => {
    const c = clients[2];
    c.ws.close(4001, 'custom');
    const ev = await c.closeEvent();
    if (ev.code !== 4001 && ev.code !== 1000) throw new Error(`close code ${ev.code} ${ev.reason}, want 4001 (echoed) or 1000`);
    return `code ${ev.code}`;
  });

  await run('server close from the app is 1000', async () => {
    const c = clients[3];
    c.ws.send('close');
    await expectText(c, 'closing', 'answer to close');
    const ev = await c.closeEvent();
    if (ev.code !== 1000) throw new Error(`close code ${ev.code} ${ev.reason}, want 1000`);
    return `reason ${JSON.stringify(ev.reason)}`;
  });

  await run('oversized message closes with 1009', async () => {
    const c = new Client('oversized');
    await c.opened();
    c.ws.send('x'.repeat(maxMessage + 1));
    const ev = await c.closeEvent();
    if (ev.code !== 1009) throw new Error(`close code ${ev.code} ${ev.reason}, want 1009`);
    return `reason ${JSON.stringify(ev.reason)}`;
  });

  await run('oversized fragmented message closes with 1009', async () => {
    const c = new Client('oversized fragmented');
    await c.opened();
    const half = Buffer.alloc(maxMessage / 2 + 1, 0x61);
    c.ws.send(half, { binary: true, fin: false });
    c.ws.send(half, { binary: true, fin: true });
    const ev = await c.closeEvent();
    if (ev.code !== 1009) throw new Error(`close code ${ev.code} ${ev.reason}, want 1009`);
  });

  await run('max_message exactly is echoed', async () => {
    const c = new Client('at the limit');
    await c.opened();
    const b = Buffer.alloc(maxMessage, 0x5a);
    c.ws.send(b);
    await expectBinary(c, b, 'echo of max_message bytes');
    c.ws.close(1000);
    await c.closeEvent();
  });

  for (const c of clients) {
    if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1000);
  }
  await bounded(Promise.all(clients.map((c) => c.closed)), 'all clients closed');
}

main().then(
  () => {
    clearTimeout(overall);
    finish(0);
  },
  (err) => {
    clearTimeout(overall);
    check('script ran to the end', false, err && err.stack ? err.stack : err);
    finish(1);
  },
);
