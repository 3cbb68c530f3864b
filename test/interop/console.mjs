// Drives the web console and the chat page of a node running the chat app
// in Debian's Chromium with puppeteer-core. Driven by TestConsole:
//   env BASE_URL     the node's HTTP server (http://127.0.0.1:<port>)
//   env CHROMIUM     the browser binary (default /usr/bin/chromium)
//   env PROFILE      an empty directory for the browser profile
//   env ADMIN_TOKEN  an API token of scope admin
//   env READ_TOKEN   an API token of scope read
//   env SHOTS        the directory for console.png and chat.png
// Prints "READY" once two chat pages talk (the Go test then restarts the
// node on the same addresses before it reads on), then "RESULT <json>"
// with named checks, and exits. Every wait is bounded.
import { createRequire } from 'node:module';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const puppeteerVersion = createRequire(import.meta.url)('puppeteer-core/package.json').version;
const base = process.env.BASE_URL;
const checks = [];
let browser;

function finish(code, client) {
  const res = { client: `${client || 'chromium'} via puppeteer-core ${puppeteerVersion}`, checks };
  process.stdout.write('RESULT ' + JSON.stringify(res) + '\n', () => process.exit(code));
}

const overall = setTimeout(() => {
  checks.push({ name: 'script finished in time', ok: false, detail: 'gave up after 80s' });
  if (browser) browser.process()?.kill('SIGKILL');
  finish(1);
}, 80000);

// check runs one named step; a failed step is reported and the script
// goes on only if later steps do not depend on it (they then fail too).
async function check(name, fn) {
  try {
    const detail = await fn();
    checks.push({ name, ok: true, detail: detail ? String(detail) : '' });
    process.stderr.write(`ok   ${name}\n`);
    return true;
  } catch (err) {
    checks.push({ name, ok: false, detail: err && err.message ? err.message : String(err) });
    process.stderr.write(`FAIL ${name}: ${err && err.message ? err.message : err}\n`);
    return false;
  }
}

const waitMs = 10000;

// until evaluates fn(...args) in page every 50 ms until it is truthy, for
// at most 10 s. It polls from here rather than with page timers, which
// Chromium throttles in pages that are not in front.
async function until(page, fn, ...args) {
  return untilFor(waitMs, page, fn, ...args);
}

async function untilFor(ms, page, fn, ...args) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await page.evaluate(fn, ...args)) return;
    if (Date.now() > deadline) throw new Error('timeout waiting for ' + String(fn).slice(0, 160));
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function newPage(label) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 860 });
  page.on('console', (m) => process.stderr.write(`${label} console ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (err) => {
    process.stderr.write(`${label} page error: ${err.message}\n`);
    checks.push({ name: `${label}: no script error`, ok: false, detail: err.message });
  });
  return page;
}

// chatter opens the chat page, sets a name and joins a room.
async function chatter(name, room) {
  const page = await newPage('chat ' + name);
  await page.goto(base + '/chat', { waitUntil: 'load', timeout: 15000 });
  await until(page, () => window.chat && window.chat.connected);
  await page.type('#name', name);
  await page.$eval('#room', (e, r) => { e.value = r; }, room);
  await page.click('#join-btn');
  await until(page, (n, r) => window.chat.name === n && window.chat.room === r, name, room);
  return page;
}

async function say(page, text) {
  await page.bringToFront(); // a page behind others gets no animation frames: clicks would hang
  await page.type('#text', text);
  await page.click('#say-btn');
}

// received waits until a chat page has shown a line of kind with text.
function received(page, kind, text, who) {
  return until(page, (k, t, w) => window.chat.lines.some((l) => l.kind === k && l.text === t && (!w || l.who === w)),
    kind, text, who || '');
}

function text(page, sel) {
  return page.$eval(sel, (e) => e.textContent);
}

async function login(page, token) {
  await page.bringToFront();
  await until(page, () => !document.getElementById('login').hidden);
  await page.type('#token', token);
  await page.click('#login-form button[type=submit]');
}

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
      '--hide-scrollbars',
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
      `--user-data-dir=${process.env.PROFILE}`,
    ],
    timeout: 30000,
    protocolTimeout: 30000,
  });
  const version = await browser.version();

  let alice, bob, carol, con;
  const chatOK = await check('two chat pages join a room', async () => {
    alice = await chatter('alice', 'lobby');
    bob = await chatter('bob', 'lobby');
  });
  if (chatOK) {
    await check('two chat pages chat with each other', async () => {
      await say(alice, 'hello bob');
      await received(bob, 'msg', 'hello bob', 'alice');
      await say(bob, 'hi alice, κόσμε');
      await received(alice, 'msg', 'hi alice, κόσμε', 'bob');
      await received(alice, 'mine', 'hello bob', 'alice');
    });
    await check('the chat page shows who is online', async () => {
      await until(alice, () => ['alice', 'bob'].every((n) => window.chat.online.includes(n)));
      return (await text(alice, '#online')).trim();
    });
  }

  // The Go test now restarts the node on the same addresses.
  process.stdout.write('READY\n');
  if (chatOK) {
    await check('chat pages reconnect and rejoin after the node restarts', async () => {
      for (const p of [alice, bob]) {
        await untilFor(20000, p, () => window.chat.reconnects === 1 && window.chat.connected && window.chat.room === 'lobby');
      }
      await received(alice, 'notice', 'reconnected to the server (reconnection 1)');
      await say(alice, 'after the restart');
      await received(bob, 'msg', 'after the restart', 'alice');
      return text(alice, '#conn');
    });
  }

  await check('console page loads in under 1 s', async () => {
    con = await newPage('console');
    const t0 = Date.now();
    await con.goto(base + '/', { waitUntil: 'load', timeout: 15000 });
    const ms = Date.now() - t0;
    const nav = await con.evaluate(() => {
      const e = performance.getEntriesByType('navigation')[0];
      return e ? Math.round(e.loadEventEnd - e.startTime) : -1;
    });
    if (ms >= 1000 || nav >= 1000) throw new Error(`load took ${ms} ms (navigation timing ${nav} ms)`);
    return `goto ${ms} ms, navigation timing ${nav} ms`;
  });

  await check('console login with a wrong token is refused', async () => {
    await login(con, 'not-the-token');
    await until(con, () => /wrong token/i.test(document.getElementById('login-error').textContent));
    if (await con.$eval('#app', (e) => !e.hidden)) throw new Error('the console opened with a wrong token');
    return text(con, '#login-error');
  });

  const adminOK = await check('console shows the connection count', async () => {
    await login(con, process.env.ADMIN_TOKEN);
    await until(con, () => !document.getElementById('app').hidden);
    await until(con, () => document.getElementById('t-connections').textContent === '2');
    return 'connections 2, ' + (await text(con, '#who'));
  });

  if (adminOK) {
    await check('console shows the worker state and the user processes', async () => {
      await until(con, () => [...document.querySelectorAll('#workers td')].some((td) => td.textContent === 'idle' || td.textContent === 'busy'));
      await until(con, () => document.getElementById('processes').textContent === 'none');
      return text(con, '#workers');
    });
    await check('console sees a third page connect', async () => {
      carol = await chatter('carol', 'lobby');
      await until(con, () => document.getElementById('t-connections').textContent === '3');
    });
    await check('a console send to a client reaches the page', async () => {
      await con.bringToFront();
      await con.type('#search', 'carol');
      await con.click('#search-form button[type=submit]');
      await until(con, () => !document.getElementById('client').hidden
        && /carol/.test(document.getElementById('c-info').textContent));
      await con.type('#c-msg', 'hello from the console');
      await con.click('#c-send-btn');
      await received(carol, 'sys', 'hello from the console');
      await until(con, () => /send to client .* done/.test(document.getElementById('log').textContent));
      return text(con, '#c-id');
    });
    await check('the console lists the group and its members', async () => {
      await con.click('#g-first');
      await until(con, () => /lobby/.test(document.getElementById('groups').textContent)
        && /3/.test(document.getElementById('groups').textContent));
      return (await text(con, '#groups')).trim();
    });
    await check('chat page reconnects after the console force-closes it', async () => {
      await con.bringToFront();
      await con.$eval('#search', (e) => { e.value = ''; });
      await con.type('#search', 'alice');
      await con.click('#search-form button[type=submit]');
      await until(con, () => /alice/.test(document.getElementById('c-info').textContent));
      await con.click('#c-force');
      await until(alice, () => window.chat.reconnects === 2 && window.chat.connected
        && window.chat.name === 'alice' && window.chat.room === 'lobby');
      await received(alice, 'notice', 'reconnected to the server (reconnection 2)');
      await say(alice, 'back again');
      await received(bob, 'msg', 'back again', 'alice');
      return text(alice, '#conn');
    });
    // Some traffic for the charts, then the screenshots.
    for (let i = 0; i < 5; i++) {
      await say(bob, `message ${i}`);
      await new Promise((r) => setTimeout(r, 400));
    }
    await until(con, () => window.consoleState.samples.length >= 3).catch(() => {});
    await check('screenshots of the console and the chat', async () => {
      const dir = process.env.SHOTS;
      await con.bringToFront();
      await con.evaluate(() => window.scrollTo(0, 0));
      await con.screenshot({ path: path.join(dir, 'console.png') });
      await bob.bringToFront();
      await bob.screenshot({ path: path.join(dir, 'chat.png'), clip: { x: 0, y: 0, width: 1280, height: 600 } });
      return dir;
    });
  }

  await check('a read-scope token cannot send', async () => {
    await con.bringToFront();
    if (await con.$eval('#logout', (e) => !e.hidden)) await con.click('#logout');
    await login(con, process.env.READ_TOKEN);
    await until(con, () => !document.getElementById('app').hidden);
    await until(con, () => /scope: read/.test(document.getElementById('who').textContent));
    const disabled = await con.evaluate(() => [...document.querySelectorAll('[data-scope]')].every((b) => b.disabled));
    if (!disabled) throw new Error('send or admin buttons are enabled for a read token');
    const status = await con.evaluate(async () => (await fetch('/api/sendToAll', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + window.consoleState.token },
      body: JSON.stringify({ message: 'must not arrive' }),
    })).status);
    if (status !== 403) throw new Error(`sendToAll with the read token answered ${status}, want 403`);
    return 'buttons disabled, sendToAll 403';
  });

  await check('the token is in neither the URL nor a cookie', async () => {
    const where = await con.evaluate(() => ({ url: location.href, cookie: document.cookie }));
    for (const t of [process.env.ADMIN_TOKEN, process.env.READ_TOKEN]) {
      if (where.url.includes(t) || where.cookie.includes(t)) throw new Error(JSON.stringify(where));
    }
  });

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
