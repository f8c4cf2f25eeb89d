#!/usr/bin/env bash
# bench/instructions.sh — replyfix's own CPU per message, counted, not timed.
#
#   bench/instructions.sh BIN [BIN ...]
#
# For each binary: runs it under valgrind's callgrind (instruction counts
# are the same for the same binary and input whatever else the machine is
# doing) in front of smtp-sink, sends MSGS messages with smtp-source (-s
# SESSIONS, 10 recipients, 1 KiB), and once with no message at all; the
# difference divided by MSGS is the user-space instructions per message.
# Then, without valgrind, `strace -c -f` counts the system calls per
# message. Prints one line per binary; the kernel side (what the system
# calls cost) is the same for equal counts.
#
# Knobs: MSGS=300 SESSIONS=20 BASE_PORT=29460 CONFIG=(a YAML file; default:
# the bench configuration, one listener, raised session limits).
set -euo pipefail

MSGS=${MSGS:-300}
SESSIONS=${SESSIONS:-20}
BASE_PORT=${BASE_PORT:-29460}
SINK_PORT=$BASE_PORT
PORT=$((BASE_PORT + 1))
WORK=$(mktemp -d /tmp/replyfix-instr.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
command -v strace >/dev/null || { echo "strace is needed" >&2; exit 1; }

wait_listen() {
    for _ in $(seq 1 300); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2; exit 1
}

CONFIG=${CONFIG:-$WORK/replyfix.yaml}
if [ ! -e "$CONFIG" ]; then
    cat > "$CONFIG" <<EOF
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
fi

/usr/sbin/smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 1000 > "$WORK/sink.out" 2>&1 &
PIDS+=($!)
wait_listen "$SINK_PORT"

# instructions BIN N: total instructions of a run that relays N messages.
instructions() {
    local bin=$1 n=$2 out=$WORK/cg.$RANDOM
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve -c "$CONFIG" \
        > /dev/null 2> "$WORK/valgrind.err" &
    local pid=$!
    wait_listen "$PORT"
    if [ "$n" -gt 0 ]; then
        /usr/sbin/smtp-source -s "$SESSIONS" -m "$n" -l 1024 -r 10 "127.0.0.1:$PORT" > /dev/null
    fi
    sleep 0.5
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    awk '/^totals:/ { print $2 }' "$out"
}

syscalls() {
    local bin=$1 n=$2
    "$bin" serve -c "$CONFIG" > /dev/null 2>&1 &
    local pid=$!
    wait_listen "$PORT"
    strace -q -c -f -p "$pid" -o "$WORK/strace.out" &
    local tracer=$!
    sleep 0.5
    /usr/sbin/smtp-source -s "$SESSIONS" -m "$n" -l 1024 -r 10 "127.0.0.1:$PORT" > /dev/null
    sleep 0.5
    kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    cp "$WORK/strace.out" "$WORK/strace.$(basename "$1").out"
    awk '/total$/ { print $4 }' "$WORK/strace.out"
}

printf '%-40s %22s %18s\n' binary "instructions/message" "syscalls/message"
for bin in "$@"; do
    base=$(instructions "$bin" 0)
    with=$(instructions "$bin" "$MSGS")
    calls=$(syscalls "$bin" "$MSGS")
    printf '%-40s %22s %18s\n' "$bin" \
        "$(awk -v a="$base" -v b="$with" -v n="$MSGS" 'BEGIN { printf "%.0f", (b - a) / n }')" \
        "$(awk -v c="$calls" -v n="$MSGS" 'BEGIN { printf "%.1f", c / n }')"
done
echo "(per-call strace tables: $WORK/strace.*.out)"
