#!/usr/bin/env bash
# burst.sh: a connect burst against `gatework start` with many gateway
# processes and few worker processes, and how many event batches the
# gateways published per batch (docs/benchmarks.md, "Connect bursts with
# busy nacks"). A fresh node (`gateway.processes: GP`, `worker.processes:
# WP`, the app APP), `gwload idle --conns N --rate RATE --duration 15s
# --src-ips 32` (RATE -1: as fast as the box opens), then the node's
# `getStats` summed over its gateways: first publishes (`events_sent`),
# publishes again (`redelivered`: busy refusals, timeouts, nacks) and their
# ratio; the worker's "slow worker" and NATS slow-consumer lines are
# counted. The node is stopped at the end.
#
#   load/burst.sh ./gatework 100000 -1 50 1            # 50 gateways, 1 worker
#   APP=chat load/burst.sh ./gatework 100000 -1 10 1
#
# Environment: GWLOAD [gwload on PATH], APP [echo]. Ports (127.0.0.1):
# 24272 ws, 24273 tcp, 24280 HTTP. N/GP must stay under ~19,000 (the
# open-file limit of a process here is 20,000).
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 GATEWORK N RATE GW_PROCS WORKER_PROCS" >&2; exit 2; }
BIN=$(realpath "$1"); N=$2; RATE=$3; GP=$4; WP=$5
GWLOAD=${GWLOAD:-gwload}; APP=${APP:-echo}
D=$(mktemp -d /tmp/gw-burst.XXXXXX)
NP=""
cleanup() { [ -n "$NP" ] && kill "$NP" 2>/dev/null && wait "$NP" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
cd "$D"
ulimit -n 20000
printf 'gateway:\n  processes: %d\nworker:\n  processes: %d\n' "$GP" "$WP" > cfg.yaml
XDG_RUNTIME_DIR="$D" "$BIN" start -c cfg.yaml --app "$APP" --ws 127.0.0.1:24272 --tcp 127.0.0.1:24273 \
  --http 127.0.0.1:24280 > node.log 2>&1 &
NP=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:24280/readyz > /dev/null && break; sleep 0.2; done
sleep 2
timeout 300 "$GWLOAD" idle --ws 127.0.0.1:24272 --conns "$N" --rate "$RATE" --duration 15s --src-ips 32 \
  --max-conns 400000 > idle.out 2>&1 || true
sleep 5
curl -s --json '{}' http://127.0.0.1:24280/api/getStats > stats.json
grep -E "^connections|^open time" idle.out || true
python3 - stats.json <<'PY'
import json, sys
gws = json.load(open(sys.argv[1]))["result"]["gateways"]
first = sum(g["events_sent"] for g in gws)
again = sum(g["redelivered"] for g in gws)
print("%d gateways: %d batches published first, %d again: %.3f published per batch" %
      (len(gws), first, again, (first + again) / max(first, 1)))
PY
echo "slow worker / slow consumer lines: $(grep -acE 'slow worker|slow consumer' node.log || true)"
