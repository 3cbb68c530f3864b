#!/usr/bin/env bash
# One measured run of one workload against one system, with a fresh server in its own temporary directory.
#   load/anchors/run2.sh   (or via load/anchors.sh, which builds everything and runs the gw/gw0/bare matrix)
#   (copied from the anchors' harness in ../shared/anchors; SETTLE_MAX and TW_MAX added)
#   <w1|w2b|w2a|w3|w4> <gw0|gw|cf|gww|bare> <tag>
# Systems: gw0 = gatework --workers 0 (worker in the master's process); gw = gatework with its default worker
# processes (2 here); gw0a = gatework --workers 0 running ../shared/anchors/gw-churn-worker's "churn" app (every client joins
# "g" and gets a welcome at connect; W2a then uses the closed-loop pub-gw-acked.mjs); cf = Centrifugo; gww = GatewayWorker 2 gateways + 2 business workers; bare = ../shared/anchors/bare.
# Binaries come from the environment (built by ../shared/anchors/setup/*.sh and `go build`):
#   GATEWORK (stock gatework), GW_CHURN (../shared/anchors/gw-churn-worker build), CENTRIFUGO_DIR (centrifugo + centrifugo.json),
#   GWW_DIR (GatewayWorker tree from setup/gatewayworker.sh), BARE (../shared/anchors/bare build).
# Results: one JSON line per run appended to $RESULTS/<workload>.jsonl (default ../shared/anchors/results-2).
# Ports: gatework ws 18272 tcp 18273 http 18280 nats 18222; Centrifugo 18000; GatewayWorker ws 18372, register
# 18238, inner 18400+; bare ws 18472, publish 18481. Loopback only.
set -uo pipefail
W=${1:?workload}; S=${2:?system}; RUNTAG=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
RESULTS=${RESULTS:-/tmp/gatework-anchors/results}; mkdir -p "$RESULTS"
D=$(mktemp -d -t anch2.XXXXXX)
log() { echo "[$(date +%T)] $*" >&2; }

busy_pct() { # whole-box busy % of one core over 3 s (200 = both cores)
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat; sleep 3; read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
  local tot=$(( (b1+b2+b3+b4+b5+b6+b7+b8) - (a1+a2+a3+a4+a5+a6+a7+a8) )) idle=$(( (b4+b5) - (a4+a5) ))
  echo $(( 200 * (tot - idle) / tot ))
}
settle() { # wait (<= SETTLE_MAX s, default 120) until the box is quiet: < 40% busy over 3 s
  local t0=$SECONDS b
  while :; do b=$(busy_pct); [ "$b" -lt 40 ] && break; [ $((SECONDS - t0)) -ge "${SETTLE_MAX:-120}" ] && { log "box still busy ($b%), going on"; break; }; done
  PRE_BUSY=$b; PRE_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
}
tw() { sed -n 's/^TCP: .* tw \([0-9]*\).*/\1/p' /proc/net/sockstat; }
wait_port() { for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.2; done; log "port $1 never opened"; return 1; }
children() { ps -o pid= --ppid "$1" | tr -d ' ' | paste -sd, -; }

# ---- per-system settings ----
APP=echo; GWW_MODE=welcome
case $W in w2b|w2a) GWW_MODE=join ;; w4) APP=churn; GWW_MODE=churn ;; esac
start_server() {
  cd "$D" || exit 1
  case $S in
    gw0|gw|gw0a)
      local bin=$GATEWORK; [ "$S" = gw0a ] && APP=churn; [ "$APP" = churn ] && bin=$GW_CHURN
      local wk=(--workers 0); [ "$S" = gw ] && wk=(--nats-listen 127.0.0.1:18222)
      XDG_RUNTIME_DIR=$D "$bin" start --app "$APP" "${wk[@]}" --ws 127.0.0.1:18272 --tcp 127.0.0.1:18273 \
        --http 127.0.0.1:18280 --log-level warn > "$D/server.log" 2>&1 &
      SPID=$!; wait_port 18272; wait_port 18280
      for _ in $(seq 1 50); do curl -sf http://127.0.0.1:18280/readyz >/dev/null && break; sleep 0.2; done
      sleep 1
      if [ "$S" = gw ]; then WPIDS=$(children "$SPID"); PIDS="node=$SPID;workers=$WPIDS"; ALLPIDS="$SPID,$WPIDS"
      else PIDS="node=$SPID"; ALLPIDS=$SPID; fi
      URL=ws://127.0.0.1:18272/ ;;
    cf)
      "$CENTRIFUGO_DIR/centrifugo" -c "$CENTRIFUGO_DIR/centrifugo.json" > "$D/server.log" 2>&1 &
      SPID=$!; wait_port 18000; sleep 1; PIDS="server=$SPID"; ALLPIDS=$SPID
      URL=ws://127.0.0.1:18000/connection/websocket ;;
    gww)
      GWW_ONCONNECT=$GWW_MODE php "$GWW_DIR/start.php" start -d > "$D/server.log" 2>&1
      wait_port 18372; sleep 2
      SPID=$(cat "$D/workerman.pid"); local gws="" bws="" oth=$SPID p
      for p in $(ps -o pid= --ppid "$SPID"); do
        case $(tr '\0' ' ' < /proc/$p/cmdline) in
          *BenchGateway*) gws="$gws,$p" ;; *BenchBusinessWorker*) bws="$bws,$p" ;; *) oth="$oth,$p" ;;
        esac
      done
      PIDS="gateways=${gws#,};business=${bws#,};register_master=$oth"; ALLPIDS="$oth$gws$bws"
      URL=ws://127.0.0.1:18372/ ;;
    bare)
      "$BARE" -addr 127.0.0.1:18472 -api 127.0.0.1:18481 > "$D/server.log" 2>&1 &
      SPID=$!; wait_port 18472; sleep 0.5; PIDS="server=$SPID"; ALLPIDS=$SPID
      URL=ws://127.0.0.1:18472/ ;;
  esac
  cd "$here" || exit 1
}
stop_server() {
  if [ "$S" = gww ]; then kill -INT "$SPID" 2>/dev/null; else kill -TERM "$SPID" 2>/dev/null; fi
  for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.2; done
  local p; for p in ${ALLPIDS//,/ }; do kill -0 "$p" 2>/dev/null && { log "killing leftover $p"; kill -9 "$p"; }; done
  wait "$SPID" 2>/dev/null
}

proto() { case $S in gw0a) echo raw ;; gw0|gw) [ "$W" = w4 ] && echo raw || echo open ;; cf) echo centrifugo ;; *) echo raw ;; esac; }
pub_cmd() { # $1 = rate (0 = as fast as it goes)
  case $S in
    gw0|gw) echo "PUB_URL=http://127.0.0.1:18280/api/sendToGroup WRAP=gatework CONC=8 RATE=$1 DUR=10 node $here/pub-http.mjs" ;;
    gw0a) if [ "$1" = 0 ]; then echo "PUB_URL=http://127.0.0.1:18280/api/sendToGroup WS_URL=ws://127.0.0.1:18272/ ACKS=4 WIN=8 DUR=10 node $here/pub-gw-acked.mjs"
          else echo "PUB_URL=http://127.0.0.1:18280/api/sendToGroup WRAP=gatework CONC=8 RATE=$1 DUR=10 node $here/pub-http.mjs"; fi ;;
    cf) echo "PORT=18000 API_KEY=bench-api-key CONC=8 RATE=$1 DUR=10 node $here/pub-centrifugo.mjs" ;;
    gww) if [ "$1" = 0 ]; then echo "URL=ws://127.0.0.1:18372/ GW_COUNT=2 WIN=8 DUR=10 node $here/pub-gw-trigger.mjs"
         else echo "REGISTER=127.0.0.1:18238 RATE=$1 DUR=10 php $GWW_DIR/pub-gw.php"; fi ;;
    bare) echo "PUB_URL=http://127.0.0.1:18481/publish WRAP=raw CONC=8 RATE=$1 DUR=10 node $here/pub-http.mjs" ;;
  esac
}

settle
if [ "$W" = w4 ]; then t0=$SECONDS; while [ "$(tw)" -gt 200 ] && [ $((SECONDS - t0)) -lt "${TW_MAX:-75}" ]; do sleep 2; done; fi
start_server
log "$W $S $RUNTAG: pids $PIDS, pre-run box busy ${PRE_BUSY}%, load $PRE_LOAD, tw $(tw)"
OUTF=$(mktemp); export PIDS URL TAG="$W/$S/$RUNTAG"
case $W in
  w1) PROTO=$(proto) MODE=w1 N=10000 BATCH=200 SETTLE=2 IDLE=${IDLE:-20} node "$here/client.mjs" > "$OUTF" ;;
  w2b|w2a)
    rate=50; [ "$W" = w2a ] && rate=0; setup=""
    case $S in gw0|gw) setup="GW_HTTP=http://127.0.0.1:18280 node $here/join-all.mjs" ;; esac
    PROTO=$(proto) MODE=w2 N=2000 BATCH=200 SETTLE=2 SETUP_CMD=$setup PUB_CMD=$(pub_cmd $rate) node "$here/client.mjs" > "$OUTF" ;;
  w3) PROTO=$(proto) N=1000 BATCH=200 WARM=2 DUR=10 node "$here/echo.mjs" > "$OUTF" ;;
  w4) PROTO=$(proto) C=100 WARM=2 DUR=10 node "$here/churn.mjs" > "$OUTF" ;;
esac
rc=$?
# server-side view after the run (gatework: its own counters), then stop
extra='{}'
case $S in gw0|gw|gw0a)
  extra=$({ curl -s -m 3 http://127.0.0.1:18280/metrics | grep -E '^gatework_[a-z_]*(closes|dropped|redeliver|refused|duplicates|throttled|panic|failed|timeout)[a-z_]*(\{[^}]*\})? [1-9]' || true; } \
    | head -40 | jq -R -s -c 'split("\n")|map(select(length>0))') ;;
esac
rss_end=$(for p in ${ALLPIDS//,/ }; do awk '/VmRSS/{print $2}' /proc/$p/status 2>/dev/null; done | paste -sd+ | bc)
stop_server
errs=$(grep -ciE 'error|panic|fatal' "$D/server.log" "$D"/*.log 2>/dev/null | awk -F: '{s+=$2} END{print s+0}')
line=$(tail -1 "$OUTF")
if [ -n "$line" ] && echo "$line" | jq -e . >/dev/null 2>&1; then
  echo "$line" | jq -c --arg sys "$S" --arg w "$W" --arg tag "$RUNTAG" --arg busy "$PRE_BUSY" --arg load "$PRE_LOAD" \
    --argjson extra "$extra" --arg rss "${rss_end:-0}" --arg errs "$errs" --arg rc "$rc" \
    '. + {sys:$sys, workload:$w, run:$tag, pre_busy_pct:($busy|tonumber), pre_load:$load, server_metrics_nonzero:$extra,
          server_rss_end_kib:($rss|tonumber), server_log_error_lines:($errs|tonumber), client_rc:($rc|tonumber)}' >> "$RESULTS/$W.jsonl"
  tail -1 "$RESULTS/$W.jsonl"
else
  log "no result line (rc $rc)"; cat "$OUTF" >&2
fi
[ "$errs" -gt 0 ] && { mkdir -p "$RESULTS/logs"; cp "$D/server.log" "$RESULTS/logs/$W-$S-$RUNTAG.log" 2>/dev/null; for f in "$D"/*.log; do cp "$f" "$RESULTS/logs/$W-$S-$RUNTAG-$(basename "$f")"; done; }
rm -f "$OUTF"; rm -rf "$D"
