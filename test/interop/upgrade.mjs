// Refusal before the upgrade (a listener with upgrade_hook), seen by Node's
// ws and by headless Chromium (puppeteer-core). Driven by
// TestUpgradeRefusal:
//   env WS_URL     ws://host:port/ of the node's upgrade_hook listener
//   env CHROMIUM   the browser binary (default /usr/bin/chromium)
//   env PROFILE    an empty directory for the browser profile
// The test app rejects an upgrade whose query has deny=<status> with that
// HTTP status and the body "denied by the app"; any other upgrade is
// accepted and echoes. Prints "READY", then "RESULT <json>" with the
// named checks, and exits. Every wait is bounded.
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import puppeteer from 'puppeteer-core';

const require = createRequire(import.meta.url);
const versions = `ws ${require('ws/package.json').version}, puppeteer-core ${require('puppeteer-core/package.json').version}`;
const url = process.env.WS_URL;
const checks = [];
let browser;
let client = `node ${process.version}`;

function check(name, ok, detail = '') {
  checks.push({ name, ok: Boolean(ok), detail: String(detail) });
}

function finish(code) {
  const res = { client: `${client}; ${versions}`, checks };
  process.stdout.write('RESULT ' + JSON.stringify(res) + '\n', () => process.exit(code));
}

const overall = setTimeout(() => {
  check('script finished in time', false, 'gave up after 75s');
  if (browser) browser.process()?.kill('SIGKILL');
  finish(1);
}, 75000);

function bounded(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer in ${ms}ms`)), ms))]);
}

// nodeRefused dials a denied upgrade with ws and resolves with the HTTP
// answer it got instead of a 101.
function nodeRefused(status) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?deny=${status}`);
    ws.on('open', () => reject(new Error('the upgrade was accepted')));
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    ws.on('error', (err) => reject(err));
  });
}

// nodeAccepted dials an accepted upgrade and resolves with the echo.
function nodeAccepted() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => ws.send('hello through the hook'));
    ws.on('message', (data) => {
      resolve(String(data));
      ws.close(1000);
    });
    ws.on('unexpected-response', (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.on('error', reject);
  });
}

async function nodeChecks() {
  const r = await bounded(nodeRefused(403), 10000, 'ws 403');
  check('ws: denied upgrade answered HTTP 403 with the body', r.status === 403 && r.body === 'denied by the app', JSON.stringify(r));
  const r2 = await bounded(nodeRefused(401), 10000, 'ws 401');
  check('ws: denied upgrade answered HTTP 401', r2.status === 401 && r2.body === 'denied by the app', JSON.stringify(r2));
  const echo = await bounded(nodeAccepted(), 10000, 'ws accept');
  check('ws: accepted upgrade echoes', echo === 'hello through the hook', echo);
}

async function browserChecks() {
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
      `--user-data-dir=${process.env.PROFILE}`,
    ],
    timeout: 30000,
    protocolTimeout: 30000,
  });
  client = `${await browser.version()}, node ${process.version}`;
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page console ${m.type()}: ${m.text()}\n`));
  // The DevTools protocol reports the handshake's HTTP status, which the
  // page's WebSocket API hides (it sees only an error and close 1006).
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  const seen = { responses: [], errors: [] };
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => seen.responses.push(e.response.status));
  cdp.on('Network.webSocketFrameError', (e) => seen.errors.push(e.errorMessage));

  const denied = await page.evaluate(
    (u) =>
      new Promise((resolve) => {
        const ws = new WebSocket(u);
        const got = { opened: false, error: false };
        ws.onopen = () => (got.opened = true);
        ws.onerror = () => (got.error = true);
        ws.onclose = (e) => resolve({ ...got, code: e.code });
        setTimeout(() => resolve({ ...got, code: 'timeout' }), 10000);
      }),
    `${url}?deny=403`,
  );
  check('chromium: denied WebSocket fails without opening (error, close 1006)',
    !denied.opened && denied.error && denied.code === 1006, JSON.stringify(denied));
  const deadline = Date.now() + 5000;
  while (seen.responses.length === 0 && seen.errors.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const status403 = seen.responses.includes(403) || seen.errors.some((m) => /response code: 403\b/.test(m));
  check('chromium: DevTools sees HTTP 403 for the handshake, not a close code', status403, JSON.stringify(seen));

  const accepted = await page.evaluate(
    (u) =>
      new Promise((resolve) => {
        const ws = new WebSocket(u);
        ws.onopen = () => ws.send('browser through the hook');
        ws.onmessage = (e) => {
          resolve(String(e.data));
          ws.close(1000);
        };
        ws.onclose = (e) => resolve(`closed ${e.code}`);
        setTimeout(() => resolve('timeout'), 10000);
      }),
    url,
  );
  check('chromium: accepted WebSocket echoes', accepted === 'browser through the hook', accepted);
  await browser.close();
}

async function main() {
  process.stdout.write('READY\n');
  await nodeChecks();
  await browserChecks();
}

main().then(
  () => {
    clearTimeout(overall);
    finish(0);
  },
  async (err) => {
    clearTimeout(overall);
    check('upgrade script ran to the end', false, err && err.stack ? err.stack : String(err));
    if (browser) await browser.close().catch(() => browser.process()?.kill('SIGKILL'));
    finish(1);
  },
);
