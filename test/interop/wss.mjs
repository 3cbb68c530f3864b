// Drives headless Chromium (puppeteer-core) against a wss:// listener.
// Driven by TestBrowserWSS:
//   env PAGE_URL   an empty page on 127.0.0.1 (a local page may open
//                  WebSockets to 127.0.0.1; a public one may not)
//   env WSS_URL    the wss:// listener
//   env SPKI       base64 SHA-256 of the server's public key: Chromium
//                  accepts that key's certificate (test CA, not trusted)
//   env CHROMIUM   the browser binary (default /usr/bin/chromium)
//   env PROFILE    an empty directory for the browser profile
// Prints "READY" once the browser runs, then "RESULT <json>". Every wait
// is bounded.
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';

const puppeteerVersion = createRequire(import.meta.url)('puppeteer-core/package.json').version;
const checks = [];
let browser;

function finish(code, client) {
  const res = { client: `${client || 'chromium'} via puppeteer-core ${puppeteerVersion}`, checks };
  process.stdout.write('RESULT ' + JSON.stringify(res) + '\n', () => process.exit(code));
}

const overall = setTimeout(() => {
  checks.push({ name: 'script finished in time', ok: false, detail: 'gave up after 60s' });
  if (browser) browser.process()?.kill('SIGKILL');
  finish(1);
}, 60000);

async function main() {
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: false, // --headless is passed below, as Debian's chromium expects it
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${process.env.SPKI}`,
      `--user-data-dir=${process.env.PROFILE}`,
    ],
    timeout: 30000,
    protocolTimeout: 30000,
  });
  const version = await browser.version();
  process.stdout.write('READY\n');
  const page = await browser.newPage();
  page.on('pageerror', (err) => process.stderr.write(`page error: ${err.message}\n`));
  await page.goto(process.env.PAGE_URL, { waitUntil: 'load', timeout: 15000 });
  const res = await page.evaluate(async (url) => {
    const out = [];
    const check = (name, ok, detail) => out.push({ name, ok, detail: String(detail) });
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    try {
      await new Promise((ok, bad) => {
        ws.onopen = ok;
        ws.onerror = () => bad(new Error('WebSocket error before open'));
        setTimeout(() => bad(new Error('no open in 10s')), 10000);
      });
      check('connect over wss', true, url);
    } catch (e) {
      check('connect over wss', false, e.message);
      return out;
    }
    const next = () => new Promise((ok) => {
      ws.onmessage = (e) => ok(e.data);
      setTimeout(() => ok(null), 10000);
    });
    for (const [name, msg] of [['echo text byte-exact', 'héllo ✓ wss'], ['echo 100 KB text', 'x'.repeat(100000)]]) {
      ws.send(msg);
      const got = await next();
      check(name, got === msg, got === null ? 'no answer' : `${got.length} chars`);
    }
    const bin = new Uint8Array([0, 255, 128, 1, 2]);
    ws.send(bin);
    const got = await next();
    const same = got instanceof ArrayBuffer && new Uint8Array(got).join() === bin.join();
    check('echo binary', same, got === null ? 'no answer' : typeof got);
    ws.close(1000);
    const code = await new Promise((ok) => {
      ws.onclose = (e) => ok(e.code);
      setTimeout(() => ok(null), 10000);
    });
    check('client close 1000', code === 1000, code);
    return out;
  }, process.env.WSS_URL);
  checks.push(...res);
  await browser.close();
  return version;
}

main().then(
  (client) => {
    clearTimeout(overall);
    finish(0, client);
  },
  async (err) => {
    clearTimeout(overall);
    checks.push({ name: 'browser script ran to the end', ok: false, detail: err && err.stack ? err.stack : String(err) });
    if (browser) await browser.close().catch(() => browser.process()?.kill('SIGKILL'));
    finish(1);
  },
);
