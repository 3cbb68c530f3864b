#!/usr/bin/env bash
# split.sh: W3 echo against `gatework start` (the default node: the gateway in
# the master, one echo worker process per CPU), with the node's CPU per round
# trip split into the master and the worker processes (docs/benchmarks.md,
# "W3 echo, round 8"). One run: a fresh node, 3 s warm-up, then 8 s in which
# the CPU ticks of the master and of its worker processes are read from
# /proc/<pid>/stat and the round trips from the gateway's
# gatework_gateway_messages_in_total; the node is stopped at the end.
#
#   load/split.sh new ./gatework                      # one run, gwload's echo clients
#   load/split.sh old ./gatework GATEWORK_GATEWAY_GOMAXPROCS=2
#   CLIENT=node load/split.sh new ./gatework          # the anchors' Node client
#
# Arguments: a label, the gatework binary, then environment assignments for
# the node. Environment: GWLOAD [gwload on PATH], CLIENT [gwload] gwload or
# node (load/anchors/echo.mjs, with its node_modules in ANCHORS_WORK
# [/tmp/gw-anchors]: run load/anchors.sh once first), CONNS [1000].
# Ports (127.0.0.1): 24272 ws, 24273 tcp, 24280 HTTP. Interleave labels,
# under `flock /tmp/gw-bench.lock`, and compare with `gwload echo --bare`
# run between them: the machine's speed moves between runs.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 LABEL GATEWORK [VAR=value ...]" >&2; exit 2; }
LABEL=$1; BIN=$(realpath "$2"); shift 2
GWLOAD=${GWLOAD:-gwload}; CLIENT=${CLIENT:-gwload}; CONNS=${CONNS:-1000}
ANCHORS_WORK=${ANCHORS_WORK:-/tmp/gw-anchors}
D=$(mktemp -d /tmp/gw-split.XXXXXX)
NP=""
cleanup() { [ -n "$NP" ] && kill "$NP" 2>/dev/null && wait "$NP" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
cd "$D"
env XDG_RUNTIME_DIR="$D" "$@" "$BIN" start --app echo --ws 127.0.0.1:24272 --tcp 127.0.0.1:24273 \
  --http 127.0.0.1:24280 > node.log 2>&1 &
NP=$!
for _ in $(seq 1 50); do curl -sf http://127.0.0.1:24280/readyz > /dev/null && break; sleep 0.2; done
sleep 1
W=$(pgrep -P "$NP" | paste -sd' ')
ticks() { for p in "$@"; do awk '{print $14+$15}' "/proc/$p/stat"; done | paste -sd+ | bc; }
msgs() { curl -s http://127.0.0.1:24280/metrics | awk '/^gatework_gateway_messages_in_total/{print $2}'; }
if [ "$CLIENT" = node ]; then
  (cd "$ANCHORS_WORK" && PROTO=open N="$CONNS" BATCH=200 WARM=2 DUR=10 URL=ws://127.0.0.1:24272/ \
    timeout 60 node echo.mjs > "$D/client.out" 2>&1) &
else
  timeout 60 "$GWLOAD" echo --ws 127.0.0.1:24272 --conns "$CONNS" --duration 13s > "$D/client.out" 2>&1 &
fi
G=$!
sleep 3
m0=$(ticks "$NP"); w0=$(ticks $W); r0=$(msgs); t0=$(date +%s.%N)
sleep 8
m1=$(ticks "$NP"); w1=$(ticks $W); r1=$(msgs); t1=$(date +%s.%N)
wait "$G" || true
awk -v l="$LABEL" -v m0="$m0" -v m1="$m1" -v w0="$w0" -v w1="$w1" -v r0="$r0" -v r1="$r1" -v t0="$t0" -v t1="$t1" 'BEGIN{
  rt = r1 - r0; hz = 100; mu = (m1 - m0) * 1e6 / hz / rt; wu = (w1 - w0) * 1e6 / hz / rt
  printf "%s: %.0f rt/s  master %.2f µs/rt  workers %.2f µs/rt  total %.2f\n", l, rt / (t1 - t0), mu, wu, mu + wu }'
