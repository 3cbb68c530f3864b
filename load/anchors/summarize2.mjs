// Summarize run2.sh results: median (min–max) and run count per (workload, system) cell.
// Usage: [EXCLUDE=w4/gw/r1,...] node ../shared/anchors/summarize2.mjs <results dir>   (EXCLUDE: workload/system/run)
import { readFileSync, existsSync } from 'node:fs';
const dir = process.argv[2] || 'results-2';
const med = (a) => { const s = [...a].sort((x, y) => x - y), n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const fmt = (v, d) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(d));
const cell = (rows, f, d = 1) => {
  const v = rows.map(f).filter((x) => x !== undefined && x !== null && !Number.isNaN(x));
  if (!v.length) return '–';
  return v.length === 1 ? fmt(v[0], d) : `${fmt(med(v), d)} (${fmt(Math.min(...v), d)}–${fmt(Math.max(...v), d)})`;
};
const sysOrder = ['gw0', 'gw0a', 'gw', 'cf', 'gww', 'bare'];
const sum = (o) => Object.entries(o || {}).filter(([k]) => !['client', 'server_total', 'box_busy', 'box_softirq'].includes(k)).reduce((a, [, v]) => a + v, 0);
const specs = {
  w1: [
    ['runs', (r) => r.length],
    ['open 10k (s)', (r) => cell(r, (x) => x.open_s, 2)],
    ['alive at end', (r) => cell(r, (x) => x.alive_end, 0)],
    ['server RSS before→after (MiB)', (r) => cell(r, (x) => Object.values(x.rss_kib).reduce((a, g) => a + g.before, 0) / 1024, 1) + ' → ' + cell(r, (x) => Object.values(x.rss_kib).reduce((a, g) => a + g.after, 0) / 1024, 1)],
    ['RSS delta/conn total (KiB)', (r) => cell(r, (x) => Object.values(x.rss_kib).reduce((a, g) => a + (g.after - g.before), 0) / x.alive_end, 2)],
    ['RSS delta/conn by group', (r) => Object.keys(r[0].rss_kib).map((k) => `${k} ${cell(r, (x) => x.rss_kib[k].per_conn_kib, 2)}`).join('; ')],
    ['idle CPU server (%)', (r) => cell(r, (x) => sum(x.idle_cpu_pct), 1)],
    ['idle CPU client (%)', (r) => cell(r, (x) => x.idle_cpu_pct.client, 1)],
    ['box busy in idle window (of 200)', (r) => cell(r, (x) => x.idle_cpu_pct.box_busy, 0)],
    ['app pings answered', (r) => cell(r, (x) => x.pings_answered, 0)],
  ],
  w2: [
    ['runs', (r) => r.length],
    ['publishes/s', (r) => cell(r, (x) => x.pub_rate, 0)],
    ['deliveries/s (total)', (r) => cell(r, (x) => x.deliveries_per_s_total, 0)],
    ['delivered %', (r) => cell(r, (x) => x.delivered_pct, 2)],
    ['deliveries per frame', (r) => cell(r, (x) => x.deliveries_per_frame, 2)],
    ['p50 ms', (r) => cell(r, (x) => x.latency_ms.p50, 1)],
    ['p99 ms', (r) => cell(r, (x) => x.latency_ms.p99, 1)],
    ['p99.9 ms', (r) => cell(r, (x) => x.latency_ms.p999, 1)],
    ['max ms', (r) => cell(r, (x) => x.latency_ms.max, 1)],
    ['server CPU (%)', (r) => cell(r, (x) => sum(x.cpu_pct_publish_window), 1)],
    ['server CPU by group', (r) => Object.keys(r[0].cpu_pct_publish_window).filter((k) => k !== 'client' && k !== 'box_busy').map((k) => `${k} ${cell(r, (x) => x.cpu_pct_publish_window[k], 1)}`).join('; ')],
    ['client CPU (%)', (r) => cell(r, (x) => x.cpu_pct_publish_window.client, 1)],
    ['box busy in window (of 200)', (r) => cell(r, (x) => x.cpu_pct_publish_window.box_busy, 0)],
    ['server RSS after (MiB)', (r) => cell(r, (x) => Object.values(x.rss_kib).reduce((a, g) => a + g.after, 0) / 1024, 1)],
    ['disconnects / ws errors', (r) => cell(r, (x) => x.closed, 0) + ' / ' + cell(r, (x) => x.ws_errors, 0)],
  ],
  w3: [
    ['runs', (r) => r.length],
    ['round trips/s', (r) => cell(r, (x) => x.round_trips_per_s, 0)],
    ['RTT p50 ms', (r) => cell(r, (x) => x.rtt_ms.p50, 2)],
    ['RTT p99 ms', (r) => cell(r, (x) => x.rtt_ms.p99, 2)],
    ['RTT p99.9 ms', (r) => cell(r, (x) => x.rtt_ms.p999, 2)],
    ['server CPU (%)', (r) => cell(r, (x) => x.cpu_pct.server_total, 1)],
    ['server CPU by group', (r) => Object.keys(r[0].cpu_pct).filter((k) => !['client', 'server_total', 'box_busy'].includes(k)).map((k) => `${k} ${cell(r, (x) => x.cpu_pct[k], 1)}`).join('; ')],
    ['server CPU per round trip (µs)', (r) => cell(r, (x) => x.server_cpu_us_per_rt, 1)],
    ['client CPU (%) / box busy (of 200)', (r) => cell(r, (x) => x.cpu_pct.client, 1) + ' / ' + cell(r, (x) => x.cpu_pct.box_busy, 0)],
    ['mismatched / errors / closed', (r) => cell(r, (x) => x.mismatched, 0) + ' / ' + cell(r, (x) => x.ws_errors, 0) + ' / ' + cell(r, (x) => x.closed_during_run, 0)],
  ],
  w4: [
    ['runs', (r) => r.length],
    ['cycles/s', (r) => cell(r, (x) => x.cycles_per_s, 0)],
    ['failed in window / whole run', (r) => cell(r, (x) => x.failed_window, 0) + ' / ' + cell(r, (x) => x.failed_total, 0)],
    ['fail kinds (all runs)', (r) => JSON.stringify(r.reduce((a, x) => { for (const [k, v] of Object.entries(x.fail_kinds)) a[k] = (a[k] || 0) + v; return a; }, {}))],
    ['cycle p50 ms', (r) => cell(r, (x) => x.cycle_ms.p50, 1)],
    ['cycle p99 ms', (r) => cell(r, (x) => x.cycle_ms.p99, 1)],
    ['cycle max ms', (r) => cell(r, (x) => x.cycle_ms.max, 1)],
    ['ready p50 / p99 ms', (r) => cell(r, (x) => x.ready_ms.p50, 1) + ' / ' + cell(r, (x) => x.ready_ms.p99, 1)],
    ['server CPU (%)', (r) => cell(r, (x) => x.cpu_pct.server_total, 1)],
    ['server CPU by group', (r) => Object.keys(r[0].cpu_pct).filter((k) => !['client', 'server_total', 'box_busy', 'box_softirq'].includes(k)).map((k) => `${k} ${cell(r, (x) => x.cpu_pct[k], 1)}`).join('; ')],
    ['server CPU per cycle (µs)', (r) => cell(r, (x) => (x.cpu_pct.server_total / 100) * 1e6 / x.cycles_per_s, 0)],
    ['client CPU (%)', (r) => cell(r, (x) => x.cpu_pct.client, 1)],
    ['client CPU per cycle (µs)', (r) => cell(r, (x) => (x.cpu_pct.client / 100) * 1e6 / x.cycles_per_s, 0)],
    ['box busy / softirq (of 200)', (r) => cell(r, (x) => x.cpu_pct.box_busy, 0) + ' / ' + cell(r, (x) => x.cpu_pct.box_softirq, 0)],
    ['EstabResets / OutRsts per run', (r) => cell(r, (x) => x.net_delta_run.EstabResets, 0) + ' / ' + cell(r, (x) => x.net_delta_run.OutRsts, 0)],
    ['TIME_WAIT at window end', (r) => cell(r, (x) => x.tw_window_end, 0)],
  ],
};
for (const w of ['w1', 'w2b', 'w2a', 'w3', 'w4']) {
  const f = `${dir}/${w}.jsonl`; if (!existsSync(f)) continue;
  const excl = (process.env.EXCLUDE || '').split(',').filter(Boolean);
  const rows = readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((x) => !excl.includes(`${w}/${x.sys}/${x.run}`));
  const by = {}; for (const x of rows) (by[x.sys] ||= []).push(x);
  const systems = sysOrder.filter((s) => by[s]);
  console.log(`\n### ${w}\n\n| | ${systems.join(' | ')} |\n|---|${systems.map(() => '---').join('|')}|`);
  for (const [label, fn] of specs[w.startsWith('w2') ? 'w2' : w]) console.log(`| ${label} | ${systems.map((s) => fn(by[s])).join(' | ')} |`);
  console.log(`\npre-run box busy (%): ${systems.map((s) => `${s} ${by[s].map((x) => x.pre_busy_pct).join(',')}`).join('; ')}`);
  const m = rows.filter((x) => Array.isArray(x.server_metrics_nonzero) && x.server_metrics_nonzero.some((l) => !l.includes('client_closed')));
  for (const x of m) console.log(`metrics ${x.sys} ${x.run}: ${x.server_metrics_nonzero.join(' ')}`);
  const e = rows.filter((x) => x.server_log_error_lines > 0); for (const x of e) console.log(`server log error lines ${x.sys} ${x.run}: ${x.server_log_error_lines}`);
}

// Ratios to bare (added for load/anchors.sh): median of the system over median of bare, per headline figure.
{
  const heads = {
    w1: [['open 10k (s)', (x) => x.open_s], ['RSS delta/conn (KiB)', (x) => Object.values(x.rss_kib).reduce((a, g) => a + (g.after - g.before), 0) / x.alive_end], ['idle CPU server (%)', (x) => sum(x.idle_cpu_pct)]],
    w3: [['round trips/s', (x) => x.round_trips_per_s], ['RTT p99 ms', (x) => x.rtt_ms.p99], ['server CPU per round trip (µs)', (x) => x.server_cpu_us_per_rt]],
    w4: [['cycles/s', (x) => x.cycles_per_s], ['cycle p99 ms', (x) => x.cycle_ms.p99], ['server CPU per cycle (µs)', (x) => (x.cpu_pct.server_total / 100) * 1e6 / x.cycles_per_s]],
  };
  const excl = (process.env.EXCLUDE || '').split(',').filter(Boolean);
  const out = [];
  for (const w of Object.keys(heads)) {
    const f = `${dir}/${w}.jsonl`; if (!existsSync(f)) continue;
    const rows = readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((x) => !excl.includes(`${w}/${x.sys}/${x.run}`));
    const by = {}; for (const x of rows) (by[x.sys] ||= []).push(x);
    if (!by.bare) continue;
    for (const [label, f2] of heads[w]) {
      const m = (s) => { const v = (by[s] || []).map(f2).filter((z) => Number.isFinite(z)); return v.length ? med(v) : NaN; };
      const b = m('bare');
      out.push(`| ${w} ${label} | ${sysOrder.filter((s) => by[s] && s !== 'bare').map((s) => `${s} ${fmt(m(s), 2)} (×${(m(s) / b).toFixed(2)})`).join('; ')} | bare ${fmt(b, 2)} |`);
    }
  }
  if (out.length) console.log(`\n### Medians and ratios to bare\n\n| figure | systems (median, ×bare) | bare |\n|---|---|---|\n${out.join('\n')}`);
}
