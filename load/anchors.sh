#!/usr/bin/env bash
# anchors.sh: gatework against a bare nbio server, driven by the side-by-side harness's third-party client
# (one Node `ws` process; see /work/shared/anchors/README.md), so speed claims are checked with a client nobody
# on the project wrote (issue 19).
#
# It installs what it needs (Node + npm from Debian apt when missing, jq/curl/bc likewise; `npm install` of the
# harness's package.json), builds gatework, the harness's bare server and gw-churn-worker (for W4) from THIS
# checkout, then runs the workloads for gw (default worker processes), gw0 (--workers 0) and bare, interleaved,
# through a copy of the harness's run2.sh, and prints medians per cell with ratios to bare.
#
#   load/anchors.sh                        # 3 rounds of w1 w3 w4
#   ROUNDS=1 WORKLOADS="w3 w4" load/anchors.sh
#
# Environment (defaults in brackets):
#   ROUNDS [3]             rounds; each round runs every (workload, system) cell once, systems interleaved
#   WORKLOADS ["w1 w3 w4"] any of w1 w3 w4
#   SYSTEMS ["gw gw0 bare"]
#   IDLE [10]              W1 idle window in s (run2.sh's default is 20)
#   SETTLE_MAX [30]        longest wait, in s, for the box to fall under 40 % busy before a run (run2.sh: 120)
#   RUN_TIMEOUT [240]      a run (server start, client, stop) taking longer is killed and reported
#   ANCHORS [load/anchors]  the harness (read only; copied): this checkout's copy of ../shared/anchors
#   WORK [/tmp/gw-anchors] work dir: harness copy, node_modules, binaries, results-<UTC time>/
#   RESULTS                results dir (default $WORK/results-<UTC time>); reuse one to add rounds
#   PORT_OFFSET [0]        added to every port below (0..518 keeps them in 18000-18999), for a box where they are taken
# Ports (run2.sh's, 127.0.0.1): gatework 18272 18273 18280 18222, bare 18472 18481. XDG_RUNTIME_DIR is a temp
# dir per run, removed after it. Per run: W1 opens 10,000 and idles IDLE s; W3 1,000 echo loops, 2 s warm-up + 10 s window; W4 100
# churn cycles in flight, 2 s + 10 s, after waiting (<= 75 s) for TIME_WAIT sockets to drain under 200.
# One round of w1 w3 w4 x 3 systems takes about 5-6 minutes on a quiet 2-core box.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
WORKLOADS=${WORKLOADS:-w1 w3 w4}
SYSTEMS=${SYSTEMS:-gw gw0 bare}
SRC=$(cd "$(dirname "$0")/.." && pwd)
ANCHORS=${ANCHORS:-$SRC/load/anchors}
WORK=${WORK:-/tmp/gw-anchors}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}
export IDLE=${IDLE:-10} SETTLE_MAX=${SETTLE_MAX:-30}
PORT_OFFSET=${PORT_OFFSET:-0}
BASE_PORTS="18272 18273 18280 18222 18472 18481"
PORTS=""; for p in $BASE_PORTS; do PORTS="$PORTS $((p + PORT_OFFSET))"; done; PORTS=${PORTS# }

log() { echo "[$(date -u +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

RUNPID=""
cleanup() {
  # Each run2.sh runs in its own process group (setsid): kill the group, servers included.
  if [ -n "$RUNPID" ]; then
    kill -TERM -- "-$RUNPID" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$RUNPID" 2>/dev/null || true
    RUNPID=""
  fi
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# ---- prerequisites ----
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
for t in jq curl bc setsid; do command -v $t >/dev/null || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  pk=("${missing[@]/setsid/util-linux}")
  log "installing ${pk[*]} from apt"
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pk[@]}" >/dev/null
fi
command -v go >/dev/null || die "go not found (Go 1.26 needed to build gatework)"
[ -f "$ANCHORS/run2.sh" ] || die "harness not found at $ANCHORS (set ANCHORS)"

for p in $PORTS; do
  if (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port 127.0.0.1:$p is busy (anchors.sh needs $PORTS free)"; fi
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 12000 ] || die "open files limit $(ulimit -n) is below 12000 (W1 opens 10,000 connections)"

# ---- harness copy, node ws, binaries ----
mkdir -p "$WORK/bin"
cp "$ANCHORS"/*.mjs "$ANCHORS"/package.json "$ANCHORS"/run2.sh "$WORK/"
chmod u+w "$WORK"/*
# run2.sh waits up to 120 s for a quiet box before each run; make the cap configurable.
sed -i 's/\[ \$((SECONDS - t0)) -ge 120 \]/[ $((SECONDS - t0)) -ge ${SETTLE_MAX:-120} ]/' "$WORK/run2.sh"
grep -q 'SETTLE_MAX' "$WORK/run2.sh" || log "note: run2.sh's settle cap not patched (its text changed); it waits up to 120 s"
if [ "$PORT_OFFSET" != 0 ]; then
  for p in $BASE_PORTS; do sed -i "s/\b$p\b/$((p + PORT_OFFSET))/g" "$WORK/run2.sh"; done
fi
if [ ! -d "$WORK/node_modules/ws" ]; then
  log "npm install (ws) in $WORK"
  (cd "$WORK" && npm install --no-audit --no-fund --loglevel=error >/dev/null) || die "npm install failed"
fi

log "building gatework, bare and gw-churn from $SRC"
(cd "$SRC" && go build -o "$WORK/bin/gatework" ./cmd/gatework) || die "go build gatework failed"
(cd "$ANCHORS/bare" && go build -o "$WORK/bin/bare" .) || die "go build bare failed"
CH=$(mktemp -d -t gw-churn.XXXXXX)
cp "$ANCHORS"/gw-churn-worker/* "$CH/" && chmod u+w "$CH"/*
(cd "$CH" && go mod edit -replace "github.com/gatework/gatework=$SRC" \
  && { go build -o "$WORK/bin/gw-churn" . 2>/dev/null || { go mod tidy >/dev/null && go build -o "$WORK/bin/gw-churn" .; }; }) \
  || die "go build gw-churn-worker failed"
rm -rf "$CH"

export GATEWORK=$WORK/bin/gatework GW_CHURN=$WORK/bin/gw-churn BARE=$WORK/bin/bare
export RESULTS=${RESULTS:-$WORK/results-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$RESULTS"
log "commit $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?'), rounds $ROUNDS, workloads $WORKLOADS, load $(cut -d' ' -f1-3 /proc/loadavg), results $RESULTS"

# ---- runs ----
run() { # $1 workload, $2 system, $3 tag
  local rc=0 t0=$SECONDS xdg
  xdg=$(mktemp -d -t gw-anch-xdg.XXXXXX) # the run's own runtime dir (gatework's pid and socket files), removed after it
  XDG_RUNTIME_DIR=$xdg setsid "$WORK/run2.sh" "$1" "$2" "$3" > /dev/null &
  RUNPID=$!
  while kill -0 "$RUNPID" 2>/dev/null; do
    if [ $((SECONDS - t0)) -ge "$RUN_TIMEOUT" ]; then log "timeout: $1 $2 $3 after ${RUN_TIMEOUT} s, killed"; cleanup; rm -rf "$xdg"; return 0; fi
    sleep 1
  done
  wait "$RUNPID" || rc=$?
  RUNPID=""
  rm -rf "$xdg"
  [ "$rc" = 0 ] || log "run $1 $2 $3 exited $rc"
  for p in $PORTS; do # a server that outlived its run would poison the next one
    if (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p still open after $1 $2 $3"; fi
  done
  return 0
}
has() { case " $WORKLOADS " in *" $1 "*) return 0 ;; esac; return 1; }
for r in $(seq 1 "$ROUNDS"); do
  if has w1; then for s in $SYSTEMS; do run w1 "$s" "r$r"; done; fi
  # W3 runs between W4 runs fill part of W4's wait for TIME_WAIT to drain (as matrix2.sh does).
  for s in $SYSTEMS; do
    if has w4; then run w4 "$s" "r$r"; fi
    if has w3; then run w3 "$s" "r$r"; fi
  done
done

# ---- summary ----
node - "$RESULTS" <<'EOF'
const fs = require('node:fs');
const dir = process.argv[2];
const med = (a) => { const s = [...a].sort((x, y) => x - y), n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN; };
const read = (w) => { const f = `${dir}/${w}.jsonl`; return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []; };
const sys = ['gw', 'gw0', 'bare'];
const rows = []; // [label, higherIsBetter, {sys: [values]}]
const add = (label, w, f) => { const by = {}; for (const x of read(w)) { const v = f(x); if (Number.isFinite(v)) (by[x.sys] ||= []).push(v); } if (Object.keys(by).length) rows.push([label, by]); };
add('W1 10,000 idle: RSS per connection, all processes (KiB)', 'w1', (x) => Object.values(x.rss_kib).reduce((a, g) => a + (g.after - g.before), 0) / x.alive_end);
add('W1: of which in worker processes (KiB)', 'w1', (x) => (x.rss_kib.workers ? x.rss_kib.workers.per_conn_kib : NaN));
add('W1: connections alive at end', 'w1', (x) => x.alive_end);
add('W3 echo, 1,000 clients: round trips/s', 'w3', (x) => x.round_trips_per_s);
add('W3: server CPU per round trip (µs)', 'w3', (x) => x.server_cpu_us_per_rt);
add('W3: RTT p99 (ms)', 'w3', (x) => x.rtt_ms.p99);
add('W4 churn, 100 in flight: cycles/s', 'w4', (x) => x.cycles_per_s);
add('W4: server CPU per cycle (µs)', 'w4', (x) => (x.cpu_pct.server_total / 100) * 1e6 / x.cycles_per_s);
add('W4: failed cycles per run (window / whole run)', 'w4', (x) => x.failed_total);
const fmt = (v) => (!Number.isFinite(v) ? '–' : Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(2));
const cell = (a) => (!a || !a.length ? '–' : a.length === 1 ? fmt(a[0]) : `${fmt(med(a))} (${fmt(Math.min(...a))}–${fmt(Math.max(...a))})`);
const ratio = (by, s) => (by[s] && by.bare && med(by.bare) ? (med(by[s]) / med(by.bare)).toFixed(2) + '×' : '–');
const noRatio = /alive|failed|of which/;
console.log(`\nmedian (min–max) over runs; ratio = median / bare's median\n`);
console.log('| workload | gw (worker processes) | gw0 (`--workers 0`) | bare | gw / bare | gw0 / bare |\n|---|---|---|---|---|---|');
for (const [label, by] of rows) {
  const r = noRatio.test(label) ? ['', ''] : [ratio(by, 'gw'), ratio(by, 'gw0')];
  if (/failed/.test(label)) { // window / whole run
    const w = {}; for (const x of read('w4')) (w[x.sys] ||= []).push(`${x.failed_window}/${x.failed_total}`);
    console.log(`| ${label} | ${sys.map((s) => (w[s] || ['–']).join(', ')).join(' | ')} | | |`); continue;
  }
  console.log(`| ${label} | ${sys.map((s) => cell(by[s])).join(' | ')} | ${r[0]} | ${r[1]} |`);
}
const all = ['w1', 'w3', 'w4'].flatMap(read);
console.log(`\nruns: ${all.length}; pre-run box busy % (of 200): ${all.map((x) => `${x.workload}/${x.sys}/${x.run} ${x.pre_busy_pct}`).join(', ')}`);
for (const x of all) {
  if (x.client_rc) console.log(`client exit ${x.client_rc}: ${x.workload}/${x.sys}/${x.run}`);
  if (x.server_log_error_lines) console.log(`server log error lines: ${x.workload}/${x.sys}/${x.run} ${x.server_log_error_lines}`);
}
EOF
log "raw results: $RESULTS (full tables: node $WORK/summarize2.mjs $RESULTS)"
