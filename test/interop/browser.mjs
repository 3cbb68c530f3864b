// Drives page.html in Debian's Chromium with puppeteer-core. Driven by
// TestBrowser:
//   env PAGE_URL   the page, served by the Go test on 127.0.0.1
//   env CHROMIUM   the browser binary (default /usr/bin/chromium)
//   env PROFILE    an empty directory for the browser profile
// Prints "READY" once the page set window.ready (the Go test then pushes
// messages through the HTTP API), then "RESULT <json>" with the page's
// window.results, and exits. Every wait is bounded.
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';

const puppeteerVersion = createRequire(import.meta.url)('puppeteer-core/package.json').version;
const checks = [];
let browser;

function finish(code, client) {
  const res = { client: `${client || 'chromium'} via puppeteer-core ${puppeteerVersion}`, checks };
  process.stdout.write('RESULT ' + JSON.stringify(res) + '\n', () => process.exit(code));
}

const overall = setTimeout(async () => {
  checks.push({ name: 'script finished in time', ok: false, detail: 'gave up after 75s' });
  if (browser) browser.process()?.kill('SIGKILL');
  finish(1);
}, 75000);

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
      `--user-data-dir=${process.env.PROFILE}`,
    ],
    timeout: 30000,
    protocolTimeout: 30000,
  });
  const version = await browser.version();
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page console ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (err) => process.stderr.write(`page error: ${err.message}\n`));
  await page.goto(process.env.PAGE_URL, { waitUntil: 'load', timeout: 15000 });
  await page.waitForFunction('window.ready === true || window.done === true', { timeout: 20000 });
  process.stdout.write('READY\n');
  await page.waitForFunction('window.done === true', { timeout: 30000 });
  const res = await page.evaluate(() => window.results);
  checks.push(...res.checks);
  await browser.close();
  return `${version} (${res.client})`;
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
