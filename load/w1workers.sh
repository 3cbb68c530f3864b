#!/usr/bin/env bash
# w1workers.sh: how much the worker processes of `gatework start` grow over
# one wave of N idle WebSocket clients (docs/benchmarks.md, "W1 worker
# memory, round 8"). A fresh node with GW_PROCS gateway processes (one holds
# fewer than the open-file limit: 15,000 each is safe under 20,000) and the
# default echo worker processes; Rss and Anonymous of every worker's
# /proc/<pid>/smaps_rollup 5 s after the start, then `gwload idle --conns N
# --duration 40s --src-ips 8`, and the same figures 35 s after it started
# (every client open, the workers' release after the burst done); the node
# is stopped at the end.
#
#   load/w1workers.sh ./gatework 10000
#   GW_PROCS=7 load/w1workers.sh ./gatework 100000
#
# Environment: GWLOAD [gwload on PATH], GW_PROCS [1]. Ports (127.0.0.1):
# 24272 ws, 24273 tcp, 24280 HTTP. The script raises its open-file limit
# to 20,000: each gwload child holds up to 15,000 clients and each gateway
# process N/GW_PROCS sockets, so keep N/GW_PROCS under about 19,000.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 GATEWORK N" >&2; exit 2; }
BIN=$(realpath "$1"); N=$2
GWLOAD=${GWLOAD:-gwload}; GW_PROCS=${GW_PROCS:-1}
D=$(mktemp -d /tmp/gw-w1workers.XXXXXX)
NP=""
cleanup() { [ -n "$NP" ] && kill "$NP" 2>/dev/null && wait "$NP" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
cd "$D"
ulimit -n 20000
printf 'gateway:\n  processes: %d\n' "$GW_PROCS" > cfg.yaml
XDG_RUNTIME_DIR="$D" "$BIN" start -c cfg.yaml --app echo --ws 127.0.0.1:24272 --tcp 127.0.0.1:24273 \
  --http 127.0.0.1:24280 > node.log 2>&1 &
NP=$!
sleep 5
W=$(for p in $(pgrep -P "$NP"); do grep -qa worker "/proc/$p/cmdline" && echo "$p"; done)
rss() { for p in $W; do awk '/^Rss:/{r=$2} /^Anonymous:/{a=$2} END{print r, a}' "/proc/$p/smaps_rollup"; done |
  awk '{r+=$1; a+=$2} END{print r, a}'; }
read -r r0 a0 <<< "$(rss)"
timeout 120 "$GWLOAD" idle --ws 127.0.0.1:24272 --conns "$N" --duration 40s --max-conns 400000 --src-ips 8 > idle.out 2>&1 &
G=$!
sleep 35
read -r r1 a1 <<< "$(rss)"
wait "$G" || true
grep -E "^connections|^open time" idle.out || true
awk -v n="$N" -v k="$(echo $W | wc -w)" -v r0="$r0" -v r1="$r1" -v a0="$a0" -v a1="$a1" 'BEGIN{
  printf "%d clients, %d worker processes: RSS +%d KiB (%.3f KiB per client), anonymous +%d KiB (%.3f KiB per client)\n",
    n, k, r1 - r0, (r1 - r0) / n, a1 - a0, (a1 - a0) / n }'
