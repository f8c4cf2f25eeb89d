#!/usr/bin/env bash
# bench/console.sh — what the admin console costs the relay.
#
# Four replyfix instances, identical but for the admin endpoint, measured
# side by side in one interleaved run (smtp-source -> replyfix -> smtp-sink,
# as bench/run.sh does):
#   off       no admin endpoint at all (no console, nothing recorded)
#   idle      admin endpoint with the console on; nobody looks at it
#   watched   the same, with a client loading / every REFRESH s (a browser
#             left open on the status page), only while it is measured
#   hammered  the same, loading / every HAMMER s (an upper bound, so the
#             per-page cost shows above the noise)
# Two loads: plain relaying (every RCPT 250; msg/s at 1 and 20 sessions)
# and every RCPT rewritten (the sink answers 530, rule user-unknown remaps
# it to 550, each rewrite is recorded for the console; sessions/s at 20).
# Records msg/s and the target's CPU µs per message (utime+stime from
# /proc), and for the watching targets the pages served and their latency;
# last, the status page's own CPU per load, measured alone.
#
# Writes $OUT/results.tsv (every measurement), $OUT/report.md (medians and
# ratios to "off"), $OUT/meta.txt. Everything on 127.0.0.1; every process it
# starts is stopped on exit. Needs smtp-source/smtp-sink (Debian package
# postfix), curl, taskset; run bench/run.sh once to install the peers.
#
# Knobs: RUNS=5 MSGS=3000 CPU=1 (the core smtp-source, smtp-sink and the
# targets share) CLIENT_CPU=0 (the page client's core) REFRESH=1 HAMMER=0.05
# PAGES=500 (status page loads in a row, to measure one page's CPU)
# BASE_PORT=29350 OUT=target/bench-console REPLYFIX_BIN=/path (no build)
# TARGETS="off idle watched hammered"
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
MSGS=${MSGS:-3000}
CPU=${CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
REFRESH=${REFRESH:-1}
HAMMER=${HAMMER:-0.05}
PAGES=${PAGES:-500}
BASE_PORT=${BASE_PORT:-29350}
OUT=${OUT:-$ROOT/target/bench-console}
read -r -a TARGETS <<< "${TARGETS:-off idle watched hammered}"

SINK_PORT=$BASE_PORT
SINK530_PORT=$((BASE_PORT + 1))
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
PIN=(taskset -c "$CPU")
CLIENT_PIN=(taskset -c "$CLIENT_CPU")

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
WORK=""
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { # utime+stime of one process, in clock ticks
    local f
    f=$(sed 's/^.*) //' "/proc/$1/stat")
    set -- $f
    echo $(( ${12} + ${13} ))
}

wait_listen() {
    local port=$1 i
    for i in $(seq 1 100); do
        ss -Hltn "sport = :$port" | grep -q . && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$port"
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

sink_count() { # name field: the last counter of an smtp-sink -c output
    tr '\r' '\n' < "$WORK/$1.out" | grep -o "$2=[0-9]*" | tail -1 | cut -d= -f2 || true
}

start_sink() { # name port [smtp-sink options...]
    local name=$1 port=$2; shift 2
    port_free "$port" || die "port $port is taken (set BASE_PORT)"
    "${PIN[@]}" "$SMTP_SINK" -u nobody -c -m 4000 "$@" "127.0.0.1:$port" 4000 \
        > "$WORK/$name.out" 2> "$WORK/$name.err" &
    PIDS+=($!)
    eval "SINK_PID_$name=$!"
    wait_listen "$port"
}

start_sinks() {
    start_sink sink "$SINK_PORT"
    start_sink sink530 "$SINK530_PORT" -f RCPT -B "530 5.7.1 User unknown"
}

# A sink that is gone (seen once on a shared machine: killed from outside
# after 78,000 messages, every later run refused) is started again; the
# run in progress when it went is already marked invalid.
ensure_sinks() {
    local name pid
    for name in sink sink530; do
        eval "pid=\$SINK_PID_$name"
        if ! kill -0 "$pid" 2>/dev/null; then
            log "smtp-sink $name is gone; starting it again"
            record sink_restarted "$name" 0 1
            if [ "$name" = sink ]; then start_sink sink "$SINK_PORT"
            else start_sink sink530 "$SINK530_PORT" -f RCPT -B "530 5.7.1 User unknown"; fi
        fi
    done
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$OUT/results.tsv"; }

# target index -> ports: plain listener, rewriting listener, admin.
port_of() { # target kind
    local i=0 t
    for t in "${TARGETS[@]}"; do
        if [ "$t" = "$1" ]; then
            case $2 in
                plain) echo $((BASE_PORT + 10 + i * 3)) ;;
                rewrite) echo $((BASE_PORT + 11 + i * 3)) ;;
                admin) echo $((BASE_PORT + 12 + i * 3)) ;;
            esac
            return
        fi
        i=$((i + 1))
    done
    die "unknown target $1"
}

start_target() { # name
    local t=$1 plain rewrite admin
    plain=$(port_of "$t" plain); rewrite=$(port_of "$t" rewrite); admin=$(port_of "$t" admin)
    {
        cat <<EOF
listeners:
  - name: plain
    address: 127.0.0.1:$plain
    upstream: sink
  - name: rewrite
    address: 127.0.0.1:$rewrite
    upstream: sink530
upstreams:
  - name: sink
    servers: ["127.0.0.1:$SINK_PORT"]
  - name: sink530
    servers: ["127.0.0.1:$SINK530_PORT"]
limits:
  max_sessions: 8000
  max_sessions_per_client: 8000
EOF
        if [ "$t" != off ]; then
            printf 'admin:\n  listen: 127.0.0.1:%s\n' "$admin"
        fi
    } > "$WORK/$t.yaml"
    for p in $plain $rewrite; do port_free "$p" || die "port $p is taken (set BASE_PORT)"; done
    "${PIN[@]}" "$BIN" serve -c "$WORK/$t.yaml" >> "$WORK/$t.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$t=$!"
    wait_listen "$plain"; wait_listen "$rewrite"
    [ "$t" = off ] || wait_listen "$admin"
}

# The page client: loads / every $2 seconds until killed; one line per page
# (curl's total time in seconds) in $3.
page_client() { # url interval file
    local url=$1 every=$2 file=$3
    while :; do
        curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}\n' "$url" >> "$file" || echo "000 0" >> "$file"
        sleep "$every"
    done
}

# measure METRIC TARGET RUN SINK COUNTER COUNT KIND smtp-source-args...
measure() {
    local metric=$1 t=$2 run=$3 sink=$4 counter=$5 count=$6 kind=$7; shift 7
    local pid port before after c0 c1 t0 t1 rc=0 got i client="" pages=$WORK/pages.$t.$run.$metric
    ensure_sinks
    eval "pid=\$PID_$t"
    port=$(port_of "$t" "$kind")
    : > "$pages"
    case $t in
        watched) page_client "http://127.0.0.1:$(port_of "$t" admin)/" "$REFRESH" "$pages" & client=$! ;;
        hammered) page_client "http://127.0.0.1:$(port_of "$t" admin)/" "$HAMMER" "$pages" & client=$! ;;
    esac
    if [ -n "$client" ]; then
        PIDS+=($client)
        taskset -cp "$CLIENT_CPU" "$client" >/dev/null
        sleep 0.2
    fi
    before=$(sink_count "$sink" "$counter"); before=${before:-0}
    c0=$(cpu_ticks "$pid"); t0=$(date +%s%N)
    "${PIN[@]}" "$SMTP_SOURCE" "$@" "127.0.0.1:$port" > /dev/null 2>> "$WORK/source.err" || rc=$?
    t1=$(date +%s%N); c1=$(cpu_ticks "$pid")
    if [ -n "$client" ]; then
        kill "$client" 2>/dev/null || true
        wait "$client" 2>/dev/null || true
    fi
    got=0
    for i in $(seq 1 30); do
        after=$(sink_count "$sink" "$counter"); got=$(( ${after:-0} - before ))
        [ "$got" -ge "$count" ] && break
        sleep 0.1
    done
    if [ "$rc" != 0 ] || [ "$got" != "$count" ]; then
        log "INVALID $metric $t run $run: smtp-source rc=$rc, sink counted $got of $count"
        record invalid "$t" "$run" "$metric:rc=$rc,counted=$got/$count"
        return 0
    fi
    local us=$(( (t1 - t0) / 1000 ))
    record "$metric" "$t" "$run" "$(awk -v n="$count" -v us="$us" 'BEGIN { printf "%.1f", n / (us / 1e6) }')"
    record "cpu_$metric" "$t" "$run" "$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$count" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
    if [ -n "$client" ]; then
        local served bad
        served=$(grep -c '^200 ' "$pages" || true)
        bad=$(grep -vc '^200 ' "$pages" || true)
        record "pages_$metric" "$t" "$run" "$served"
        record "page_ms_$metric" "$t" "$run" "$(awk '$1 == 200 { s += $2; n++ } END { printf "%.2f", n ? s / n * 1000 : 0 }' "$pages")"
        [ "$bad" = 0 ] || log "$metric $t run $run: $bad page loads failed"
    fi
    log "$metric $t run $run: $count in $(awk -v us="$us" 'BEGIN { printf "%.2f", us / 1e6 }') s"
}

report() {
    python3 - "$OUT" "${TARGETS[*]}" <<'EOF'
import collections, statistics, sys
out, targets = sys.argv[1], sys.argv[2].split()
vals = collections.defaultdict(list)
invalid = 0
for line in open(f"{out}/results.tsv"):
    metric, target, run, value = line.rstrip("\n").split("\t")
    if metric == "invalid":
        invalid += 1
        continue
    if metric == "sink_restarted":
        continue
    vals[(metric, target)].append(float(value))
def med(m, t):
    v = vals.get((m, t))
    return statistics.median(v) if v else None
def spread(m, t):
    v = vals.get((m, t))
    return (min(v), max(v)) if v else None
loads = [("msgs_c1", "msg/s, 1 session"), ("msgs_c20", "msg/s, 20 sessions"),
         ("rewrites_c20", "sessions/s, 20 sessions, every RCPT rewritten")]
print(open(f"{out}/meta.txt").read())
print("Medians of the runs (min–max in brackets); ratios are to `off` (no admin endpoint).\n")
print("| load | target | rate | × off | CPU µs/msg | × off | pages served | page load ms |")
print("|---|---|---|---|---|---|---|---|")
for metric, label in loads:
    base_r, base_c = med(metric, "off"), med(f"cpu_{metric}", "off")
    for t in targets:
        r, c = med(metric, t), med(f"cpu_{metric}", t)
        if r is None:
            continue
        sr, sc = spread(metric, t), spread(f"cpu_{metric}", t)
        pages = med(f"pages_{metric}", t)
        ms = med(f"page_ms_{metric}", t)
        ratio = lambda a, b: f"{a / b:.3f}" if a is not None and b else "–"
        print(f"| {label} | {t} | {r:.0f} [{sr[0]:.0f}–{sr[1]:.0f}] | {ratio(r, base_r)} "
              f"| {c:.1f} [{sc[0]:.1f}–{sc[1]:.1f}] | {ratio(c, base_c)} "
              f"| {'' if pages is None else f'{pages:.0f}'} | {'' if ms is None else f'{ms:.2f}'} |")
print()
# The page's own cost, measured alone: PAGES loads of / in a row against
# the idle target (its table full of rewrites), relay quiet.
for t in targets:
    cpu, ms, n = med("page_cpu_us", t), med("page_alone_ms", t), med("page_alone_pages", t)
    if cpu is not None:
        print(f"- Status page alone (`{t}`, 50 rewrites in its table, relay quiet): "
              f"{cpu:.0f} µs of replyfix CPU per page, {ms:.2f} ms per load "
              f"(median of {len(vals[('page_cpu_us', t)])} runs of {n:.0f} loads).")
print(f"\nInvalid runs: {invalid}.")
EOF
}

main() {
    [ -x "$SMTP_SOURCE" ] && [ -x "$SMTP_SINK" ] || die "smtp-source/smtp-sink missing: apt-get install postfix (or run bench/run.sh once)"
    command -v curl >/dev/null || die "curl is needed"
    command -v python3 >/dev/null || die "python3 is needed"
    BIN=${REPLYFIX_BIN:-}
    if [ -z "$BIN" ]; then
        log "building replyfix (release)"
        (cd "$ROOT" && cargo build --release --quiet)
        BIN=$ROOT/target/release/replyfix
    fi
    HZ=$(getconf CLK_TCK)
    mkdir -p "$OUT"
    WORK=$(mktemp -d /tmp/replyfix-console-bench.XXXXXX)
    : > "$OUT/results.tsv"
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "machine: nproc=$(nproc), CPU model \"$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)\", kernel $(uname -r)"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "replyfix $("$BIN" --version | awk '{ print $2 }') (git $(git -C "$ROOT" rev-parse --short HEAD))"
        echo "pinning: smtp-source, smtp-sink and the targets on CPU $CPU; the page client (curl) on CPU $CLIENT_CPU"
        echo "load: $MSGS messages per run (1 KiB body, 10 recipients, one session per message); $RUNS runs, interleaved (order rotated each run); watched loads / every ${REFRESH}s, hammered every ${HAMMER}s, only while measured"
    } > "$OUT/meta.txt"
    cat "$OUT/meta.txt" >&2

    start_sinks
    local t
    for t in "${TARGETS[@]}"; do start_target "$t"; done
    # Warm-up (not recorded), also fills the consoles' tables.
    for t in "${TARGETS[@]}"; do
        "${PIN[@]}" "$SMTP_SOURCE" -s 5 -m 100 -l 1024 -r 10 "127.0.0.1:$(port_of "$t" plain)" >/dev/null 2>>"$WORK/source.err" \
            || die "warm-up through $t failed: $(tail -3 "$WORK/source.err")"
        "${PIN[@]}" "$SMTP_SOURCE" -A -s 5 -m 100 -l 1024 -r 10 "127.0.0.1:$(port_of "$t" rewrite)" >/dev/null 2>/dev/null \
            || die "warm-up (rewrites) through $t failed"
    done

    local run i n=${#TARGETS[@]}
    for run in $(seq 1 "$RUNS"); do
        local order=()
        for i in $(seq 0 $((n - 1))); do order+=("${TARGETS[$(( (i + run - 1) % n ))]}"); done
        for t in "${order[@]}"; do
            measure msgs_c1 "$t" "$run" sink mesg "$MSGS" plain -s 1 -m "$MSGS" -l 1024 -r 10
        done
        for t in "${order[@]}"; do
            measure msgs_c20 "$t" "$run" sink mesg "$MSGS" plain -s 20 -m "$MSGS" -l 1024 -r 10
        done
        for t in "${order[@]}"; do
            # -A: go on after the rejected recipients; no DATA follows, so
            # the sink's session counter is checked.
            measure rewrites_c20 "$t" "$run" sink530 sess "$MSGS" rewrite -A -s 20 -m "$MSGS" -l 1024 -r 10
        done
    done
    # The status page alone: its CPU per load, with a full table.
    if [[ " ${TARGETS[*]} " == *" idle "* ]]; then
        local url pages=$WORK/pages.alone c0 c1 ok
        url="http://127.0.0.1:$(port_of idle admin)/"
        for run in $(seq 1 "$RUNS"); do
            : > "$pages"
            c0=$(cpu_ticks "$PID_idle")
            "${CLIENT_PIN[@]}" bash -c 'for i in $(seq 1 "$2"); do curl -s -o /dev/null --max-time 5 -w "%{http_code} %{time_total}\n" "$1"; done' _ "$url" "$PAGES" >> "$pages"
            c1=$(cpu_ticks "$PID_idle")
            ok=$(grep -c '^200 ' "$pages" || true)
            [ "$ok" = "$PAGES" ] || { log "INVALID page run $run: $ok of $PAGES pages"; record invalid idle "$run" "page:$ok/$PAGES"; continue; }
            record page_cpu_us idle "$run" "$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$PAGES" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
            record page_alone_ms idle "$run" "$(awk '{ s += $2 } END { printf "%.3f", s / NR * 1000 }' "$pages")"
            record page_alone_pages idle "$run" "$PAGES"
            log "page alone run $run: $PAGES loads, $((c1 - c0)) ticks"
        done
    fi
    report > "$OUT/report.md"
    log "done: $OUT/report.md (logs and configs: $WORK)"
    cat "$OUT/report.md"
}

main "$@"
