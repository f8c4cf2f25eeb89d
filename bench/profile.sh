#!/usr/bin/env bash
# bench/profile.sh — where replyfix (or HAProxy) spends its time under the
# 20-session load of bench/run.sh, and what it asks of the kernel.
#
#   bench/profile.sh [replyfix|haproxy] [BIN]
#
# Starts smtp-sink and the target on 127.0.0.1 (ports from BASE_PORT,
# default 29350), all pinned to CPU (default 1) like run.sh, then:
#   1. perf record (software clock, DWARF call graphs) of the target during
#      `smtp-source -s 20 -m MSGS -l 1024 -r 10`; prints the top symbols
#      (self and children) to OUT/perf-<target>.txt;
#   2. strace -c -f of the target during a second, smaller run: system calls
#      per message, to OUT/strace-<target>.txt.
# perf needs linux-perf (Debian: linux-perf); hardware counters are not
# needed (VMs often have none). Every daemon is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${1:-replyfix}
BIN=${2:-$ROOT/target/release/replyfix}
MSGS=${MSGS:-3000}
STRACE_MSGS=${STRACE_MSGS:-500}
CPU=${CPU:-1}
BASE_PORT=${BASE_PORT:-29350}
OUT=${OUT:-$ROOT/bench/out}
SINK_PORT=$BASE_PORT
PORT=$((BASE_PORT + 1))
PIN=(taskset -c "$CPU")
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/replyfix-profile.XXXXXX)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_listen() {
    for _ in $(seq 1 100); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2; exit 1
}

"${PIN[@]}" /usr/sbin/smtp-sink -u nobody -c -m 4000 "127.0.0.1:$SINK_PORT" 4000 > "$WORK/sink.out" 2>&1 &
PIDS+=($!)
wait_listen $SINK_PORT

case $TARGET in
    replyfix)
        cat > "$WORK/replyfix.yaml" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$PORT
    upstream: sink
upstreams:
  - name: sink
    servers: ["127.0.0.1:$SINK_PORT"]
limits:
  max_sessions: 8000
  max_sessions_per_client: 8000
EOF
        "${PIN[@]}" "$BIN" serve -c "$WORK/replyfix.yaml" > "$WORK/replyfix.log" 2>&1 &
        ;;
    haproxy)
        cat > "$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
listen smtp
    bind 127.0.0.1:$PORT
    server sink 127.0.0.1:$SINK_PORT
EOF
        "${PIN[@]}" haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
        ;;
    *) echo "usage: $0 [replyfix|haproxy] [BIN]" >&2; exit 2 ;;
esac
PID=$!
PIDS+=($PID)
wait_listen $PORT
"${PIN[@]}" /usr/sbin/smtp-source -s 20 -m 200 -l 1024 -r 10 "127.0.0.1:$PORT"   # warm-up

echo "perf record: $MSGS messages, 20 sessions" >&2
perf record -q -e cpu-clock -F 4000 --call-graph dwarf,16384 -p "$PID" -o "$WORK/perf.data" &
PERF=$!
sleep 0.5
"${PIN[@]}" /usr/sbin/smtp-source -s 20 -m "$MSGS" -l 1024 -r 10 "127.0.0.1:$PORT"
kill -INT $PERF; wait $PERF || true
{
    echo "# perf, $TARGET, $MSGS messages, 20 sessions: self time"
    perf report -i "$WORK/perf.data" --no-children --no-inline --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 || true
    echo
    echo "# perf, $TARGET: including children"
    perf report -i "$WORK/perf.data" --children --no-inline --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' \
        | grep -vE 'tokio::runtime|std::|core::ops|clone3|start_thread|catch_unwind|call_once' | head -60 || true
} > "$OUT/perf-$TARGET.txt"

echo "strace -c: $STRACE_MSGS messages, 20 sessions" >&2
strace -c -f -p "$PID" -o "$WORK/strace.txt" &
STRACE=$!
sleep 0.5
"${PIN[@]}" /usr/sbin/smtp-source -s 20 -m "$STRACE_MSGS" -l 1024 -r 10 "127.0.0.1:$PORT"
sleep 0.3
kill -INT $STRACE; wait $STRACE || true
{
    echo "# strace -c -f, $TARGET, $STRACE_MSGS messages, 20 sessions (calls / $STRACE_MSGS = per message)"
    cat "$WORK/strace.txt"
} > "$OUT/strace-$TARGET.txt"
echo "wrote $OUT/perf-$TARGET.txt $OUT/strace-$TARGET.txt (perf.data in $WORK)" >&2
