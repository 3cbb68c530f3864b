#!/bin/sh
# c1m.sh: the C1M measurement of docs/benchmarks.md in one command: one
# gatework node (a master with gateway.processes gateway processes, one echo
# worker process) and gwload's idle clients on this machine, CONNS live
# WebSocket connections with the default heartbeats (pings after 25 s of
# quiet, 60 s idle timeout), held for HOLD, then a clean stop.
#
#   load/c1m.sh                       # 1,000,000 connections for 5 minutes
#   CONNS=50000 HOLD=30s load/c1m.sh  # a small rehearsal
#   CLIENT=sockets load/c1m.sh        # the clients on kernel sockets, as in rounds 1-3
#   STOP=connected APP=chat CONNS=500000 load/c1m.sh  # stop the node with every client connected
#
# CLIENT=tun (the default, as root with CAP_NET_ADMIN): the clients are
# emulated. The script makes a network namespace NETNS (gwc1m) with lo
# and a TUN device (gwtun0, 10.77.0.1/8, multi-queue, txqueuelen TXQUEUELEN),
# runs the node inside it with its ws listener on 10.77.0.1:PORT (its
# HTTP API and embedded NATS on the namespace's own 127.0.0.1), and runs
# `gwload idle --tun gwtun0` there: one process, one TCP state machine per
# client in user space (load/tunclient), clients 10.1.0.0:10000 onwards.
# Real: the server's kernel TCP sockets, the gatework processes, the
# heartbeats (every ping crosses the kernel and is answered by a pong).
# Emulated: the clients' TCP stacks (no client socket, no client file, no
# kernel memory for the client side). The namespace is always deleted at
# the end (trap), and removed first if a previous run left it.
#
# CLIENT=sockets: gwload idle with child processes of kernel sockets on
# 127.0.0.0/8, as before (below).
#
# STOP=connected (tun only): after the hold, gwload runs `gatework stop`
# with every client still connected instead of closing them: the report
# gives the stop's time against shutdown_timeout (60 s here), how the
# clients ended (close frames 1001, FINs, RSTs) and when the last had gone;
# the log gives the close events counted lost, if any. APP (echo) is the
# worker app: echo has no OnClose and no OnConnect, so its close and
# connect events are left out (the workers see no idle client at all);
# APP=chat has one (it returns at once for a client that never chose a
# name), so every client's close event goes to the worker during the stop.
#
# Settings (environment): CONNS (1000000), HOLD (5m), CLIENT (tun), STOP
# (orderly: gwload closes the clients first; or connected), APP (echo),
# TUN_QUEUES (2), TUN_IO_URING (1: the TUN client moves its packets
# through an io_uring per queue; 0: a read and a write system call per
# packet, as before 2026-12-05), TUN_TIMESTAMPS (1: the emulated clients
# use TCP timestamps, as real ones do; 0: not, as before round 9: the
# server then cannot time a ping it sent again, and a client late by more
# than the server's 200 ms retransmission timeout has every ping sent
# twice), TXQUEUELEN (100000: packets the TUN
# device queues for gwload's readers before it drops; TCP sends a dropped
# one again after a timeout), CLOSE_RATE (2500/s, tun: the orderly close;
# 5,000/s saturated the box at 900k), CLIENT_NICE (-5, tun: the emulated
# clients stand for other machines, so their one process runs at a higher
# priority than the node: a starved client process drops the node's packets
# at its device queue, and TCP's retransmissions then tip the box over),
# OPEN_MIN_IDLE (10, tun: percent of the machine's CPU the open leaves
# idle; while less is idle, sampled every 250 ms, gwload starts no new
# handshake: an open that takes every cycle the idle connections leave
# tips the box at the next burst; 0: paced by RATE alone), GW_PROCS
# (one per 19,000 connections with tun, 16,700 with sockets, at least 2),
# PER_PROC (15000 connections per gwload
# child), RATE (2000: connections opened per second, all children together,
# at most RATE x 100 ms handshakes in flight; lower it when the open keeps
# the machine's load average above its core count), PORT (30000: WebSocket; PORT+1: HTTP API), MIN_FREE_MIB (2048:
# gwload closes everything when MemAvailable drops below it), SAMPLE (0:
# off; N: every N seconds, $DIR/samples.log gets the machine's CPU split
# from /proc/stat, the TUN device's TX drops, TCP's memory in pages from
# the node's /proc/net/sockstat and the major page faults; gwload's
# progress, every second, is on stderr), DIR (/tmp/gatework-c1m: binaries, configuration, logs,
# results).
#
# Why so many gateway processes: a process may hold at most `ulimit -n` files
# (20,000 here), so 1M server sockets need 60 gateway processes and 1M
# client sockets 67 gwload children; the clients bind 500 source addresses
# (127.0.0.1 ... 127.0.1.244, 2,000 each: one source address has only
# ~28,000 ephemeral ports per destination, and the kernel's search for a
# free one slows down as they fill).
#
# Kernel settings: none is changed by default. SYSCTL=1 (as root) gives the
# network namespace (CLIENT=tun) a TCP established hash of its own with a
# bucket per connection (net.ipv4.tcp_child_ehash_entries, set while the
# namespace is made and put back at once: the machine's table, sized at
# boot, has 262,144 buckets here), and raises,
# and only raises, net.core.somaxconn to 65535 (each gateway process's
# accept backlog; Go listens with somaxconn), fs.file-max to 4,000,000 and
# net.ipv4.tcp_mem (TCP's memory for the whole machine, in 4 KiB pages) to
# 2, 4 and 6 KiB per connection; the values before are printed, and
# tcp_mem's is put back at the end. tcp_mem matters from about 950k
# connections on this 24 GiB machine: the kernel's default (1.1, 1.5 and
# 2.2 GiB here) is sized from the RAM, and each socket with data not yet
# acknowledged or not yet read is charged at least a page of it, which a
# burst of late acknowledgements at 1M sockets turns into gigabytes; past
# the middle value TCP drops packets and past the last it resets connections
# (TcpExtTCPMemoryPressures, TcpExtTCPAbortOnMemory in /proc/net/netstat,
# printed at the end of a run). Without SYSCTL=1 a run too big for it warns.
set -eu

CONNS=${CONNS:-1000000}
HOLD=${HOLD:-5m}
PER_PROC=${PER_PROC:-15000}
RATE=${RATE:-2000}
PORT=${PORT:-30000}
MIN_FREE_MIB=${MIN_FREE_MIB:-2048}
DIR=${DIR:-/tmp/gatework-c1m}
CLIENT=${CLIENT:-tun}
TUN_QUEUES=${TUN_QUEUES:-2}
TUN_IO_URING=${TUN_IO_URING:-1}
TUN_TIMESTAMPS=${TUN_TIMESTAMPS:-1}
TXQUEUELEN=${TXQUEUELEN:-100000}
CLOSE_RATE=${CLOSE_RATE:-2500}
CLIENT_NICE=${CLIENT_NICE:--5}
OPEN_MIN_IDLE=${OPEN_MIN_IDLE:-10}
STOP=${STOP:-orderly}
APP=${APP:-echo}
case $STOP in
orderly | connected) ;;
*) echo "c1m: STOP=$STOP: want orderly or connected" >&2; exit 2 ;;
esac
[ "$STOP" = connected ] && [ "$CLIENT" != tun ] && { echo "c1m: STOP=connected needs CLIENT=tun" >&2; exit 2; }
NETNS=${NETNS:-gwc1m}
TUN_DEV=gwtun0
case $CLIENT in
tun)
	# 20,000 files per process: 19,000 clients + the process's own ~50.
	GW_PROCS=${GW_PROCS:-$(( (CONNS + 18999) / 19000 ))}
	WS_HOST=10.77.0.1
	IN_NS="ip netns exec $NETNS"
	;;
sockets)
	GW_PROCS=${GW_PROCS:-$(( (CONNS + 16699) / 16700 ))}
	WS_HOST=127.0.0.1
	IN_NS=
	;;
*) echo "c1m: CLIENT=$CLIENT: want tun or sockets" >&2; exit 2 ;;
esac
[ "$GW_PROCS" -lt 2 ] && GW_PROCS=2
HTTP_PORT=$((PORT + 1))
ROOT=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$DIR"
export XDG_RUNTIME_DIR="$DIR"
say() { echo "c1m: $(date -u +%H:%M:%S) $*" >&2; }

say "building gatework and gwload"
(cd "$ROOT" && go build -o "$DIR/gatework" ./cmd/gatework && go build -o "$DIR/gwload" ./cmd/gwload)

del_netns() {
	if ip netns list | grep -qw "$NETNS"; then
		ip netns del "$NETNS" && say "network namespace $NETNS deleted"
	fi
}
if [ "$CLIENT" = tun ]; then
	del_netns # left by an interrupted run
	# The kernel finds the socket of every packet in the TCP established
	# hash, one table for the machine sized at boot (262,144 buckets on
	# this 24 GiB VM): at 1M sockets, chains of four and more, 13 % of the
	# CPU of the process that writes the packets (C1M round 9). A network
	# namespace made while net.ipv4.tcp_child_ehash_entries is set gets a
	# table of its own of that size; the setting is put back at once.
	EHASH_OLD=
	if [ "${SYSCTL:-0}" = 1 ] && [ -e /proc/sys/net/ipv4/tcp_child_ehash_entries ]; then
		EHASH_OLD=$(sysctl -n net.ipv4.tcp_child_ehash_entries)
		ehash=262144
		while [ "$ehash" -lt "$CONNS" ]; do ehash=$((ehash * 2)); done
		sysctl -w net.ipv4.tcp_child_ehash_entries="$ehash" >/dev/null
	fi
	ip netns add "$NETNS"
	if [ -n "$EHASH_OLD" ]; then
		sysctl -w net.ipv4.tcp_child_ehash_entries="$EHASH_OLD" >/dev/null
		say "network namespace $NETNS made with a TCP established hash of its own: $($IN_NS sysctl -n net.ipv4.tcp_ehash_entries) buckets"
	fi
	trap del_netns EXIT
	trap 'del_netns; exit 130' INT TERM
	ip -n "$NETNS" link set lo up
	ip -n "$NETNS" tuntap add dev "$TUN_DEV" mode tun multi_queue
	ip -n "$NETNS" addr add "$WS_HOST/8" dev "$TUN_DEV"
	ip -n "$NETNS" link set "$TUN_DEV" up txqueuelen "$TXQUEUELEN"
	say "network namespace $NETNS: $TUN_DEV $WS_HOST/8"
fi

# tcp_mem is the machine's (not per network namespace): 2, 4 and 6 KiB
# per connection, in pages.
TCP_MEM_OLD=$(sysctl -n net.ipv4.tcp_mem | tr -s ' \t' ' ')
TCP_MEM_WANT="$((CONNS / 2)) $CONNS $((CONNS * 3 / 2))"
TCP_MEM_SET=
if [ "${SYSCTL:-0}" = 1 ]; then
	# somaxconn is per network namespace: set where the node runs.
	for kv in net.core.somaxconn=65535 fs.file-max=4000000; do
		k=${kv%%=*} v=${kv#*=}
		cur=$($IN_NS sysctl -n "$k")
		say "sysctl $k: $cur"
		if [ "$cur" -lt "$v" ]; then $IN_NS sysctl -w "$k=$v" >/dev/null && say "sysctl $k raised to $v"; fi
	done
	say "sysctl net.ipv4.tcp_mem: $TCP_MEM_OLD"
	new=$(printf '%s\n%s\n' "$TCP_MEM_OLD" "$TCP_MEM_WANT" | awk 'NR == 1 { split($0, o) } NR == 2 { for (i = 1; i <= 3; i++) printf "%d%s", ($i > o[i] ? $i : o[i]), (i < 3 ? " " : "") }')
	if [ "$new" != "$TCP_MEM_OLD" ]; then
		sysctl -w net.ipv4.tcp_mem="$new" >/dev/null && TCP_MEM_SET=1 && say "sysctl net.ipv4.tcp_mem raised to $new (put back at the end)"
	fi
elif [ "${TCP_MEM_OLD##* }" -lt "${TCP_MEM_WANT##* }" ]; then
	say "warning: net.ipv4.tcp_mem ($TCP_MEM_OLD pages) is less than 6 KiB per connection; past about $(echo "$TCP_MEM_OLD" | awk '{printf "%d", $2 * 2.5}') connections the kernel may drop and reset them for TCP memory: SYSCTL=1 raises it for the run"
fi
# tcp_ext prints TCP's memory counters of the node's network namespace.
tcp_ext() {
	$IN_NS awk '/^TcpExt:/ { if (!h) { split($0, k); h = 1 } else { for (i = 2; i <= NF; i++) if (k[i] == "TCPMemoryPressures" || k[i] == "TCPAbortOnMemory") printf "%s %s ", k[i], $i } }' /proc/net/netstat
	$IN_NS awk '/^TCP:/ { printf "(sockstat: %s)", $0 }' /proc/net/sockstat
}

cat >"$DIR/c1m.yaml" <<EOF
# Written by load/c1m.sh. Everything not set here is the default.
listeners:
  - name: ws
    protocol: ws
    addr: $WS_HOST:$PORT
http:
  addr: 127.0.0.1:$HTTP_PORT
gateway:
  processes: $GW_PROCS
worker:
  app: $APP
  processes: 1
shutdown_timeout: 60s
EOF

say "machine before: $(uptime | sed 's/.*load/load/'); $(free -m | awk '/Mem:/ {print "MemAvailable " $7 " MiB"}')"
say "starting gatework: $GW_PROCS gateway processes on $WS_HOST:$PORT"
$IN_NS "$DIR/gatework" start -d -c "$DIR/c1m.yaml" --log-format json
MASTER=$(cat "$DIR/gatework.pid")
stop_node() {
	if [ -z "${NODE_STOPPED:-}" ] && kill -0 "$MASTER" 2>/dev/null; then
		NODE_STOPPED=1
		say "stopping gatework (master $MASTER)"
		stop_t0=$(date +%s.%N)
		$IN_NS "$DIR/gatework" stop -c "$DIR/c1m.yaml" || true
		say "gatework stopped in $(echo "$(date +%s.%N) - $stop_t0" | bc) s"
	fi
}
cleanup() {
	if [ -n "${SAMPLER:-}" ]; then
		kill "$SAMPLER" 2>/dev/null || true
		SAMPLER=
	fi
	stop_node
	[ "$CLIENT" = tun ] && del_netns
	if [ -n "$TCP_MEM_SET" ]; then
		sysctl -w net.ipv4.tcp_mem="$TCP_MEM_OLD" >/dev/null && say "sysctl net.ipv4.tcp_mem put back to $TCP_MEM_OLD"
		TCP_MEM_SET=
	fi
	return 0
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# The master (embedded NATS, HTTP API) and the worker process count with
# the gateway processes in gwload's figures.
WORKERS=$(pgrep -P "$MASTER" -f ' worker ' | paste -sd, - || true)
PIDS=$MASTER${WORKERS:+,$WORKERS}
$IN_NS "$DIR/gatework" status -c "$DIR/c1m.yaml" | head -3 >&2

# sample prints a line of $DIR/samples.log every SAMPLE seconds while
# gwload runs, for at most gwload's --max-duration (45 minutes); cleanup
# stops it too.
sample() {
	prev=$(head -1 /proc/stat) pf=$(awk '/^pgmajfault/ {print $2}' /proc/vmstat)
	n=$((2700 / SAMPLE))
	while [ ! -f "$DIR/gwload.rc" ] && [ "$n" -gt 0 ]; do
		n=$((n - 1))
		sleep "$SAMPLE"
		cur=$(head -1 /proc/stat) cf=$(awk '/^pgmajfault/ {print $2}' /proc/vmstat)
		cpu=$(printf '%s\n%s\n' "$prev" "$cur" | awk 'NR == 1 { for (i = 2; i <= 9; i++) a[i] = $i }
			NR == 2 { for (i = 2; i <= 9; i++) { d[i] = $i - a[i]; t += d[i] }
				printf "user %d%% system %d%% idle %d%% iowait %d%% softirq %d%%", 100*d[2]/t, 100*d[4]/t, 100*d[5]/t, 100*d[6]/t, 100*d[8]/t }')
		drops=
		[ "$CLIENT" = tun ] && drops=" | TX drops $(ip -n "$NETNS" -s link show "$TUN_DEV" | awk '/TX:/ { getline; print $4 }')"
		echo "$(date -u +%T) $cpu$drops | TCP memory $($IN_NS awk '/^TCP:/ { print $NF }' /proc/net/sockstat) pages | major faults $((cf - pf))"
		prev=$cur pf=$cf
	done >"$DIR/samples.log"
}
rm -f "$DIR/gwload.rc"
SAMPLER=
if [ "${SAMPLE:-0}" -gt 0 ]; then
	sample &
	SAMPLER=$!
fi

say "gwload idle ($CLIENT): $CONNS connections at $RATE/s, held for $HOLD (extra target pids $PIDS)"
set +e
{
if [ "$CLIENT" = tun ]; then
	STOP_CMD=
	[ "$STOP" = connected ] && STOP_CMD="$DIR/gatework stop -c $DIR/c1m.yaml"
	NO_RING=false
	[ "$TUN_IO_URING" = 0 ] && NO_RING=true
	NO_TS=false
	[ "$TUN_TIMESTAMPS" = 0 ] && NO_TS=true
	$IN_NS nice -n "$CLIENT_NICE" "$DIR/gwload" idle --tun "$TUN_DEV" --tun-queues "$TUN_QUEUES" --close-rate "$CLOSE_RATE" \
		--stop-cmd "$STOP_CMD" --tun-no-io-uring="$NO_RING" --tun-no-timestamps="$NO_TS" \
		--ws "$WS_HOST:$PORT" --http "127.0.0.1:$HTTP_PORT" \
		--conns "$CONNS" --max-conns "$CONNS" --rate "$RATE" --open-min-idle "$OPEN_MIN_IDLE" \
		--duration "$HOLD" --max-duration 75m --min-free "$MIN_FREE_MIB" \
		--pids "$PIDS" --json "$DIR/c1m.json"
else
	"$DIR/gwload" idle --ws "127.0.0.1:$PORT" --http "127.0.0.1:$HTTP_PORT" \
		--conns "$CONNS" --max-conns "$CONNS" --per-proc "$PER_PROC" --rate "$RATE" \
		--duration "$HOLD" --max-duration 45m --min-free "$MIN_FREE_MIB" \
		--pids "$PIDS" --json "$DIR/c1m.json"
fi
echo $? >"$DIR/gwload.rc"
} | tee "$DIR/c1m.txt"
rc=$(cat "$DIR/gwload.rc")
set -e
if [ "$STOP" = connected ]; then
	say "gwload exit $rc; it stopped the node with its clients connected"
else
	say "gwload exit $rc; its clients are closed"
fi
if [ "$STOP" = orderly ]; then
	# The close events of every client reach the worker before the stop:
	# wait (at most 10 minutes) until no gateway process holds a client or
	# an event batch in flight.
	t0=$(date +%s)
	for _ in $(seq 1 600); do
		kill -0 "$MASTER" 2>/dev/null || { left="? (the node is gone)"; break; }
		left=$($IN_NS "$DIR/gatework" status --json -c "$DIR/c1m.yaml" 2>/dev/null | python3 -c '
import json, sys
n = 0
for p in json.load(sys.stdin)["processes"]:
    g = p.get("gateway") or {}
    n += p.get("connections", 0) + g.get("in_flight", 0) + g.get("parked", 0)
print(n)' 2>/dev/null || echo "?")
		[ "$left" = 0 ] && break
		sleep 1
	done
	say "clients gone and their close events handled in $(( $(date +%s) - t0 )) s (left: $left)"
	$IN_NS "$DIR/gatework" status -c "$DIR/c1m.yaml" >"$DIR/status-after.txt" 2>&1 || true
fi
say "kernel TCP memory: $(tcp_ext)"
if [ "$CLIENT" = tun ]; then
	# TX drops: packets to the clients that the device queue dropped.
	say "$TUN_DEV: $(ip -n "$NETNS" -s link show "$TUN_DEV" | tr -s ' \n' ' ')"
fi
cleanup
trap - EXIT INT TERM
d=$(sed -n 's/^  "disconnected": \([0-9]*\).*/\1/p' "$DIR/c1m.json" | head -1)
say "unexpected closes (gwload disconnected): ${d:-0}"
# Each gateway process that gave up on events at its stop deadline logs
# one line with their count (docs/operations.md, "stop").
say "lost events logged: $(python3 -c '
import json, sys
lines = events = closes = 0
for line in open(sys.argv[1], errors="replace"):
    if "not handed to a worker in time" not in line:
        continue
    lines += 1
    try:
        d = json.loads(line[line.index("{"):])
    except ValueError:
        continue
    events += int(d.get("events", 0))
    closes += int(d.get("close_events", 0))
print("%d events (%d close events) in %d log lines" % (events, closes, lines))' "$DIR/gatework.log"); crashes logged: $(grep -c 'process crashed' "$DIR/gatework.log" || true)"
say "stop: $(grep -c '"shutdown: connections still open at the deadline' "$DIR/gatework.log" || true) gateway processes had clients still open at the deadline"
say "results: $DIR/c1m.txt, $DIR/c1m.json, logs $DIR/gatework.log"
exit $rc
