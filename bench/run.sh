#!/usr/bin/env bash
# bench/run.sh — replyfix side by side with a blind TCP proxy (HAProxy), the
# nginx mail proxy and no proxy at all (smtp-source -> smtp-sink directly).
#
# One command: installs its peers if missing (Debian packages), builds
# replyfix in release mode, runs every measurement interleaved across the
# targets, checks that the sink counted every message, and writes
#   $OUT/results.tsv   every single measurement
#   $OUT/report.md     the table (medians, ratios to direct and to HAProxy)
#   $OUT/msgs.svg      msg/s by concurrency per target (gnuplot)
# Everything listens on 127.0.0.1 only; every daemon it starts is stopped on
# exit (trap). See bench/README.md for what each figure means.
#
# Knobs (environment): RUNS=3 MSGS=5000 BIG_MSGS=20 BIG_SIZE=10000000
# LAT_COUNT=500 IDLE=800 IDLE_SOURCES=40 CPU=1 (the core everything is
# pinned to) BASE_PORT=29250 OUT=bench/out
# TARGETS="direct haproxy nginx replyfix rf_quick rf_minimal" (a subset, in
# this order; rf_quick and rf_minimal are replyfix as a user first runs it:
# the quick-start flags, and config/minimal.yaml)
# REPLYFIX_B=/path/to/other/replyfix  adds target replyfix_b (A/B of a change)
# REPLYFIX_BIN=/path/to/replyfix  use this binary as "replyfix" (no build)
# PHASES="msgs big latency rules idle tls" (a subset)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
MSGS=${MSGS:-5000}
BIG_MSGS=${BIG_MSGS:-20}
BIG_SIZE=${BIG_SIZE:-10000000}
LAT_COUNT=${LAT_COUNT:-500}
# Within the default max_sessions (1000), so the defaults targets hold them.
IDLE=${IDLE:-800}
# Idle sessions come from this many loopback addresses (127.0.0.2, ...): 20
# each, under the default per-client limit (50).
IDLE_SOURCES=${IDLE_SOURCES:-40}
CPU=${CPU:-1}
# Below the kernel's ephemeral range (32768-60999 by default), so a busy
# machine's outgoing connections cannot take a port the benchmark binds.
BASE_PORT=${BASE_PORT:-29250}
OUT=${OUT:-$ROOT/bench/out}
CONCURRENCY=(1 20 100)
read -r -a TARGETS <<< "${TARGETS:-direct haproxy nginx replyfix rf_quick rf_minimal}"
REPLYFIX_B=${REPLYFIX_B:-}
[ -n "$REPLYFIX_B" ] && TARGETS+=(replyfix_b)
PHASES=" ${PHASES:-msgs big latency rules idle tls} "
phase() { [[ $PHASES == *" $1 "* ]]; }

SINK_PORT=$BASE_PORT                  # smtp-sink, plain
SINK550_PORT=$((BASE_PORT + 1))       # smtp-sink, every RCPT "550 5.1.1 User unknown"
SINK530_PORT=$((BASE_PORT + 2))       # smtp-sink, every RCPT "530 5.7.1 User unknown"
HAPROXY_PORT=$((BASE_PORT + 10))
NGINX_PORT=$((BASE_PORT + 11))
NGINX_AUTH_PORT=$((BASE_PORT + 12))
REPLYFIX_PORT=$((BASE_PORT + 13))
RF550_PORT=$((BASE_PORT + 14))
RF530_PORT=$((BASE_PORT + 15))
REPLYFIX_B_PORT=$((BASE_PORT + 16))
RF_QUICK_PORT=$((BASE_PORT + 17))     # replyfix serve --listen --upstream
RF_MINIMAL_PORT=$((BASE_PORT + 18))   # replyfix serve -c config/minimal.yaml
TLS_SINK_ST_PORT=$((BASE_PORT + 20))  # replyfix offering STARTTLS in front of smtp-sink
TLS_SINK_IMP_PORT=$((BASE_PORT + 21)) # the same instance, implicit TLS
RFTLS_PORT=$((BASE_PORT + 22))        # replyfix, STARTTLS on both legs
HATLS_PORT=$((BASE_PORT + 23))        # HAProxy, TLS termination and origination
TLS_COUNT=${TLS_COUNT:-300}

SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
PIN=(taskset -c "$CPU")
HERE=$ROOT/bench

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- peers
install_peers() {
    local missing=()
    [ -x "$SMTP_SOURCE" ] && [ -x "$SMTP_SINK" ] || missing+=(postfix)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v nginx >/dev/null || missing+=(nginx)
    [ -e /usr/lib/nginx/modules/ngx_mail_module.so ] || missing+=(libnginx-mod-mail)
    command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v pgrep >/dev/null || missing+=(procps)
    command -v python3 >/dev/null || missing+=(python3)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing: ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep the packages from starting their daemons (invoke-rc.d asks policy-rc.d).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    [ $made_policy = 1 ] && rm -f $policy
    # Where a daemon was started anyway (no policy-rc.d honoured), stop it:
    # only the services this function just installed.
    for pkg in "${missing[@]}"; do
        case $pkg in postfix|haproxy|nginx) service "$pkg" stop >/dev/null 2>&1 || true ;; esac
    done
}

# ---------------------------------------------------------------- processes
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

# The pid and its direct children (nginx: master + worker).
tree() { echo "$1"; pgrep -P "$1" || true; }

# utime+stime of a process tree, in clock ticks.
cpu_ticks() {
    local sum=0 p f
    for p in $(tree "$1"); do
        [ -r /proc/$p/stat ] || continue
        f=$(sed 's/^.*) //' /proc/$p/stat)
        set -- $f
        sum=$((sum + ${12} + ${13}))
    done
    echo $sum
}

# Sum of a /proc/PID/status field (kB) over a process tree.
status_kib() {
    local field=$1 sum=0 p v
    for p in $(tree "$2"); do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' /proc/$p/status 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo $sum
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

start_sink() { # name port [smtp-sink options...]
    local name=$1 port=$2; shift 2
    port_free "$port" || die "port $port is taken (set BASE_PORT)"
    "${PIN[@]}" "$SMTP_SINK" -u nobody -c -m 4000 "$@" "127.0.0.1:$port" 4000 \
        > "$WORK/$name.out" 2> "$WORK/$name.err" &
    PIDS+=($!)
    eval "PID_$name=$!"
    wait_listen "$port"
}

# Last counter line of an smtp-sink -c output: "sess=N quit=N mesg=N".
sink_count() { # name field
    tr '\r' '\n' < "$WORK/$1.out" | grep -o "$2=[0-9]*" | tail -1 | cut -d= -f2 || true
}

# HAProxy's global and defaults sections, the same for every HAProxy target.
haproxy_head() {
    cat <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
EOF
}

write_configs() {
    { haproxy_head; cat <<EOF
listen smtp
    bind 127.0.0.1:$HAPROXY_PORT
    maxconn 8000
    server sink 127.0.0.1:$SINK_PORT
EOF
    } > "$WORK/haproxy.cfg"
    mkdir -p "$WORK/nginx"
    cat > "$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8000; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    # The auth_http responder: every session goes to the sink.
    server {
        listen 127.0.0.1:$NGINX_AUTH_PORT;
        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $SINK_PORT;
            return 204;
        }
    }
}
mail {
    server_name bench.local;
    auth_http 127.0.0.1:$NGINX_AUTH_PORT/auth;
    proxy_pass_error_message on;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        protocol smtp;
        smtp_auth none;
        proxy on;
        xclient off;
    }
}
EOF
    for pair in "replyfix:$REPLYFIX_PORT:$SINK_PORT" "rf550:$RF550_PORT:$SINK550_PORT" \
                "rf530:$RF530_PORT:$SINK530_PORT" "replyfix_b:$REPLYFIX_B_PORT:$SINK_PORT"; do
        IFS=: read -r name port up <<< "$pair"
        # The defaults but for the session limits (50 per client would
        # refuse the 100-session and idle runs, which all come from 127.0.0.1).
        cat > "$WORK/$name.yaml" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$port
    upstream: sink
upstreams:
  - name: sink
    servers: ["127.0.0.1:$up"]
limits:
  max_sessions: 8000
  max_sessions_per_client: 8000
EOF
    done
    # config/minimal.yaml as shipped, but for its two addresses.
    sed -e "s/127\.0\.0\.1:2525/127.0.0.1:$RF_MINIMAL_PORT/" \
        -e "s/\"127\.0\.0\.1:25\"/\"127.0.0.1:$SINK_PORT\"/" \
        "$ROOT/config/minimal.yaml" > "$WORK/rf_minimal.yaml"
    grep -q "127.0.0.1:$RF_MINIMAL_PORT" "$WORK/rf_minimal.yaml" \
        && grep -q "127.0.0.1:$SINK_PORT" "$WORK/rf_minimal.yaml" \
        || die "config/minimal.yaml changed shape; adapt write_configs"
}

# The defaults targets keep the default per-client limit (50 sessions):
# 100 sessions from smtp-source's one address are refused there by design.
defaults_target() { [ "$1" = rf_quick ] || [ "$1" = rf_minimal ]; }

# start_target NAME: sets PID_<name> (0 for direct) and PORT_<name>.
start_target() {
    local t=$1
    case $t in
        direct) PID_direct=0; PORT_direct=$SINK_PORT ;;
        haproxy)
            port_free $HAPROXY_PORT || die "port $HAPROXY_PORT is taken"
            "${PIN[@]}" haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
            PIDS+=($!); PID_haproxy=$!; PORT_haproxy=$HAPROXY_PORT
            wait_listen $HAPROXY_PORT ;;
        nginx)
            port_free $NGINX_PORT || die "port $NGINX_PORT is taken"
            "${PIN[@]}" nginx -c "$WORK/nginx.conf" > "$WORK/nginx.log" 2>&1 &
            PIDS+=($!); PID_nginx=$!; PORT_nginx=$NGINX_PORT
            wait_listen $NGINX_PORT; wait_listen $NGINX_AUTH_PORT ;;
        rf_quick)
            port_free $RF_QUICK_PORT || die "port $RF_QUICK_PORT is taken"
            "${PIN[@]}" "$BIN" serve --listen "127.0.0.1:$RF_QUICK_PORT" \
                --upstream "127.0.0.1:$SINK_PORT" >> "$WORK/rf_quick.log" 2>&1 &
            PIDS+=($!); PID_rf_quick=$!; PORT_rf_quick=$RF_QUICK_PORT
            wait_listen $RF_QUICK_PORT ;;
        replyfix|rf550|rf530|replyfix_b|rf_minimal)
            local port bin=$BIN; port=$(awk -F: '/address:/ { print $3 }' "$WORK/$t.yaml")
            [ "$t" = replyfix_b ] && bin=$REPLYFIX_B
            port_free "$port" || die "port $port is taken"
            "${PIN[@]}" "$bin" serve -c "$WORK/$t.yaml" >> "$WORK/$t.log" 2>&1 &
            PIDS+=($!); eval "PID_$t=$!; PORT_$t=$port"
            wait_listen "$port" ;;
        *) die "unknown target $t" ;;
    esac
}

stop_target() {
    local t=$1 pid
    eval "pid=\${PID_$t:-0}"
    [ "$pid" = 0 ] && return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    eval "PID_$t=0"
}

now_ns() { date +%s%N; }

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$OUT/results.tsv"; }

# throughput METRIC TARGET RUN SINK COUNTER COUNT smtp-source-args...
# Runs smtp-source against the target; records msg/s and the target's CPU
# µs per message; the run is invalid unless the sink's COUNTER (mesg or sess)
# grew by exactly COUNT.
throughput() {
    local metric=$1 t=$2 run=$3 sink=$4 counter=$5 count=$6; shift 6
    local pid port before after c0 c1 t0 t1 rc=0 got i
    eval "pid=\$PID_$t; port=\$PORT_$t"
    before=$(sink_count "$sink" "$counter"); before=${before:-0}
    c0=0; [ "$pid" != 0 ] && c0=$(cpu_ticks "$pid")
    t0=$(now_ns)
    # With -A (rule runs) smtp-source warns about every rejected recipient.
    local errs=$WORK/source.err
    [ "$1" = -A ] && errs=/dev/null
    "${PIN[@]}" "$SMTP_SOURCE" "$@" "127.0.0.1:$port" > /dev/null 2>> "$errs" || rc=$?
    t1=$(now_ns)
    c1=0; [ "$pid" != 0 ] && c1=$(cpu_ticks "$pid")
    got=0
    for i in $(seq 1 30); do
        after=$(sink_count "$sink" "$counter"); after=${after:-0}
        got=$((after - before))
        [ "$got" -ge "$count" ] && break
        sleep 0.1
    done
    if [ "$rc" != 0 ] || [ "$got" != "$count" ]; then
        log "INVALID $metric $t run $run: smtp-source rc=$rc, sink counted $got of $count"
        record invalid "$t" "$run" "$metric:rc=$rc,counted=$got/$count"
        return 0
    fi
    local secs_x1e6=$(( (t1 - t0) / 1000 ))
    record "$metric" "$t" "$run" "$(awk -v n="$count" -v us="$secs_x1e6" 'BEGIN { printf "%.1f", n / (us / 1e6) }')"
    if [ "$pid" != 0 ]; then
        record "cpu_$metric" "$t" "$run" "$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$count" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
    fi
    log "$metric $t run $run: $count in $(awk -v us="$secs_x1e6" 'BEGIN { printf "%.2f", us / 1e6 }') s"
}

# idle_run TARGET RUN greeting|rcpt: records idle_kib_per_session or
# parked_kib_per_session, (VmRSS with - VmRSS before) / IDLE.
idle_run() {
    local t=$1 run=$2 stage=$3 metric=idle_kib_per_session
    [ "$stage" = rcpt ] && metric=parked_kib_per_session
    start_target "$t"
    local pid port
    eval "pid=\$PID_$t; port=\$PORT_$t"
    "${PIN[@]}" python3 "$HERE/smtpclient.py" latency 127.0.0.1 "$port" 20 >/dev/null 2>>"$WORK/latency.err" || true
    sleep 0.5
    local before with ready=$WORK/idle.ready i
    rm -f "$ready" "$ready.stop"
    before=$(status_kib VmRSS "$pid")
    "${PIN[@]}" python3 "$HERE/smtpclient.py" idle 127.0.0.1 "$port" "$IDLE" "$ready" 180 "$stage" "$IDLE_SOURCES" 2>>"$WORK/idle.err" &
    local client=$!
    PIDS+=($client)
    for i in $(seq 1 1200); do [ -e "$ready" ] && break; sleep 0.1; done
    sleep 1
    with=$(status_kib VmRSS "$pid")
    local ready_n; ready_n=$(cat "$ready" 2>/dev/null || echo 0)
    touch "$ready.stop"
    wait "$client" 2>/dev/null || true
    if [ "$ready_n" = "$IDLE" ]; then
        record "$metric" "$t" "$run" "$(awk -v a="$before" -v b="$with" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')"
        log "idle ($stage) $t run $run: RSS $before -> $with KiB"
    else
        log "INVALID idle ($stage) $t run $run: $ready_n of $IDLE sessions got there ($(tail -1 "$WORK/idle.err" 2>/dev/null))"
        record invalid "$t" "$run" "idle-$stage:ready=$ready_n/$IDLE"
    fi
    stop_target "$t"
}

# ---------------------------------------------------------------- TLS
# replyfix with STARTTLS on both legs against HAProxy terminating and
# originating TLS (HAProxy cannot speak STARTTLS: its legs are TLS from the
# first byte). Both relay to the same TLS peer, a replyfix instance in front
# of the plain smtp-sink that offers STARTTLS on one port and implicit TLS on
# another. The client is bench/smtpclient.py (Python's ssl, a full handshake
# per message, one session at a time); the figure that matters is the
# target's own CPU per message, from /proc. Every leg: TLS 1.3 (both sides'
# default), ECDSA P-256 certificate, no verification upstream (HAProxy
# "verify none", replyfix "policy: encrypt").
tls_phase() {
    local cert=$WORK/tls-cert.pem key=$WORK/tls-key.pem
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$key" -out "$cert" 2>/dev/null || die "openssl could not make the test certificate"
    cat "$cert" "$key" > "$WORK/tls-combined.pem"
    cat > "$WORK/tlssink.yaml" <<EOF
listeners:
  - name: starttls
    address: 127.0.0.1:$TLS_SINK_ST_PORT
    upstream: sink
    tls: {cert: "$cert", key: "$key"}
  - name: implicit
    address: 127.0.0.1:$TLS_SINK_IMP_PORT
    upstream: sink
    tls: {cert: "$cert", key: "$key", implicit: true}
upstreams:
  - name: sink
    servers: ["127.0.0.1:$SINK_PORT"]
limits: {max_sessions: 8000, max_sessions_per_client: 8000}
logging: {level: warn}
EOF
    cat > "$WORK/rftls.yaml" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$RFTLS_PORT
    upstream: tlssink
    tls: {cert: "$cert", key: "$key"}
upstreams:
  - name: tlssink
    servers: ["127.0.0.1:$TLS_SINK_ST_PORT"]
    tls: {policy: encrypt}
limits: {max_sessions: 8000, max_sessions_per_client: 8000}
EOF
    { haproxy_head; cat <<EOF
listen smtps
    bind 127.0.0.1:$HATLS_PORT ssl crt $WORK/tls-combined.pem
    server tlssink 127.0.0.1:$TLS_SINK_IMP_PORT ssl verify none
EOF
    } > "$WORK/hatls.cfg"
    local p
    for p in $TLS_SINK_ST_PORT $TLS_SINK_IMP_PORT $RFTLS_PORT $HATLS_PORT; do
        port_free "$p" || die "port $p is taken"
    done
    "${PIN[@]}" "$BIN" serve -c "$WORK/tlssink.yaml" >> "$WORK/tlssink.log" 2>&1 &
    PIDS+=($!); local tlssink=$!
    wait_listen $TLS_SINK_ST_PORT; wait_listen $TLS_SINK_IMP_PORT
    "${PIN[@]}" "$BIN" serve -c "$WORK/rftls.yaml" >> "$WORK/rftls.log" 2>&1 &
    PIDS+=($!); local pid_replyfix=$!
    "${PIN[@]}" haproxy -db -f "$WORK/hatls.cfg" > "$WORK/hatls.log" 2>&1 &
    PIDS+=($!); local pid_haproxy=$!
    wait_listen $RFTLS_PORT; wait_listen $HATLS_PORT
    local run t pid port mode before after got c0 c1 t0 t1 ok us
    for run in $(seq 1 "$RUNS"); do
        local order=(haproxy replyfix)
        [ $((run % 2)) = 0 ] && order=(replyfix haproxy)
        for t in "${order[@]}"; do
            if [ "$t" = replyfix ]; then pid=$pid_replyfix port=$RFTLS_PORT mode=starttls
            else pid=$pid_haproxy port=$HATLS_PORT mode=implicit; fi
            before=$(sink_count sink mesg); before=${before:-0}
            c0=$(cpu_ticks "$pid"); t0=$(now_ns)
            ok=$("${PIN[@]}" python3 "$HERE/smtpclient.py" tls 127.0.0.1 "$port" "$TLS_COUNT" "$mode" "$cert" 2>>"$WORK/tls.err" || true)
            t1=$(now_ns); c1=$(cpu_ticks "$pid")
            got=0
            for _ in $(seq 1 30); do
                after=$(sink_count sink mesg); got=$(( ${after:-0} - before ))
                [ "$got" -ge "$TLS_COUNT" ] && break
                sleep 0.1
            done
            if [ "${ok:-0}" != "$TLS_COUNT" ] || [ "$got" != "$TLS_COUNT" ]; then
                log "INVALID tls $t run $run: client ok=${ok:-0}, sink counted $got of $TLS_COUNT ($(tail -1 "$WORK/tls.err" 2>/dev/null))"
                record invalid "$t" "$run" "tls:ok=${ok:-0},counted=$got/$TLS_COUNT"
                continue
            fi
            us=$(( (t1 - t0) / 1000 ))
            record tls_msgs "$t" "$run" "$(awk -v n="$TLS_COUNT" -v us="$us" 'BEGIN { printf "%.1f", n / (us / 1e6) }')"
            record cpu_tls_msgs "$t" "$run" "$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$TLS_COUNT" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
            log "tls $t run $run: $TLS_COUNT in $(awk -v us="$us" 'BEGIN { printf "%.2f", us / 1e6 }') s"
        done
    done
    kill "$pid_replyfix" "$pid_haproxy" "$tlssink" 2>/dev/null || true
}

# ---------------------------------------------------------------- main
main() {
    install_peers
    command -v python3 >/dev/null || die "python3 is needed"
    BIN=${REPLYFIX_BIN:-}
    if [ -z "$BIN" ]; then
        log "building replyfix (release)"
        (cd "$ROOT" && cargo build --release --quiet)
        BIN=$ROOT/target/release/replyfix
    fi
    HZ=$(getconf CLK_TCK)

    mkdir -p "$OUT"
    WORK=$(mktemp -d /tmp/replyfix-bench.XXXXXX)
    : > "$OUT/results.tsv"
    local rustc_v; rustc_v=$(rustc --version 2>/dev/null || echo unknown)
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "machine: nproc=$(nproc), CPU model \"$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)\", $(awk '/MemTotal/ { printf "%.1f GiB", $2/1048576 }' /proc/meminfo), kernel $(uname -r)"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "versions: replyfix $("$BIN" --version | awk '{ print $2 }') (git $(git -C "$ROOT" rev-parse --short HEAD), $rustc_v); $(haproxy -v | head -1 | awk '{ print "HAProxy", $3 }'); $(nginx -v 2>&1 | sed 's/^nginx version: //'); Postfix smtp-source/smtp-sink $(dpkg-query -W -f='${Version}' postfix 2>/dev/null || echo '?'); $(python3 --version)"
        echo "pinning: smtp-source, smtp-sink and the target all on CPU $CPU (taskset -c $CPU); HAProxy nbthread 1; nginx 1 worker; replyfix workers = available cores = 1"
        echo "load: $MSGS messages per run (1 KiB body, 10 recipients, one session per message), $BIG_MSGS x $BIG_SIZE-byte messages, $LAT_COUNT latency transactions, $IDLE idle sessions from $IDLE_SOURCES loopback addresses (after the greeting, and parked after RCPT); $RUNS runs each, interleaved; figures are medians"
    } > "$OUT/meta.txt"
    cat "$OUT/meta.txt" >&2

    write_configs
    start_sink sink "$SINK_PORT"
    start_sink sink550 "$SINK550_PORT" -f RCPT -B "550 5.1.1 User unknown"
    start_sink sink530 "$SINK530_PORT" -f RCPT -B "530 5.7.1 User unknown"
    local t
    for t in "${TARGETS[@]}"; do start_target "$t"; done
    start_target rf550
    start_target rf530

    # Warm-up: a few sessions through every target (not recorded).
    for t in "${TARGETS[@]}"; do
        eval "port=\$PORT_$t"
        "${PIN[@]}" "$SMTP_SOURCE" -s 5 -m 50 -l 1024 -r 10 "127.0.0.1:$port" >/dev/null 2>>"$WORK/source.err" \
            || die "warm-up through $t failed: $(tail -3 "$WORK/source.err")"
    done

    local run c i n=${#TARGETS[@]}
    for run in $(seq 1 "$RUNS"); do
        # Rotate the order each run so no target always goes first.
        local order=()
        for i in $(seq 0 $((n - 1))); do order+=("${TARGETS[$(( (i + run - 1) % n ))]}"); done
        phase msgs && for c in "${CONCURRENCY[@]}"; do
            for t in "${order[@]}"; do
                if [ "$c" -gt 50 ] && defaults_target "$t"; then
                    [ "$run" = 1 ] && log "msgs_c$c $t: not run (over the default per-client limit of 50, refused by design)"
                    continue
                fi
                throughput "msgs_c$c" "$t" "$run" sink mesg "$MSGS" -s "$c" -m "$MSGS" -l 1024 -r 10
            done
        done
        phase big && for t in "${order[@]}"; do
            throughput big_msgs "$t" "$run" sink mesg "$BIG_MSGS" -s 1 -m "$BIG_MSGS" -l "$BIG_SIZE" -r 1
        done
        phase latency && for t in "${order[@]}"; do
            eval "port=\$PORT_$t"
            local lat
            if lat=$("${PIN[@]}" python3 "$HERE/smtpclient.py" latency 127.0.0.1 "$port" "$LAT_COUNT" 2>>"$WORK/latency.err"); then
                set -- $lat
                record greet_p50 "$t" "$run" "$1"; record greet_p99 "$t" "$run" "$2"
                record txn_p50 "$t" "$run" "$3"; record txn_p99 "$t" "$run" "$4"
            else
                log "INVALID latency $t run $run: $lat"
                record invalid "$t" "$run" "latency:$lat"
            fi
        done
        # Rule-heavy: replyfix in front of a sink that answers every RCPT with
        # a 530 the built-in rules remap (user-unknown -> 550 5.1.1), against
        # the same flow with a 550 no rule can match. smtp-source -A goes on
        # after rejected recipients; no DATA follows, so the sink counts
        # sessions, not messages.
        local rule_order=(rf550 rf530)
        [ $((run % 2)) = 0 ] && rule_order=(rf530 rf550)
        phase rules && for t in "${rule_order[@]}"; do
            local sink=${t/rf/sink}
            throughput "rule_c20" "$t" "$run" "$sink" sess "$MSGS" -A -s 20 -m "$MSGS" -l 1024 -r 10
        done
    done

    for t in "${TARGETS[@]}" rf550 rf530; do
        eval "pid=\$PID_$t"
        [ "$pid" = 0 ] && continue
        record peak_rss_kib "$t" 1 "$(status_kib VmHWM "$pid")"
        stop_target "$t"
    done

    # Idle sessions: a fresh instance each time, warmed with a few
    # transactions, then IDLE sessions (from IDLE_SOURCES addresses) that
    # read the greeting and sit ("greeting"), or go on to EHLO, MAIL, RCPT
    # and sit there ("rcpt": parked, as behind a slow upstream).
    phase idle && for run in $(seq 1 "$RUNS"); do
        for stage in greeting rcpt; do
            for t in "${TARGETS[@]}"; do
                [ "$t" = direct ] && continue
                idle_run "$t" "$run" "$stage"
            done
        done
    done

    if phase tls && [[ " ${TARGETS[*]} " == *" replyfix "* && " ${TARGETS[*]} " == *" haproxy "* ]]; then
        tls_phase
    fi

    python3 "$HERE/report.py" "$OUT" "$BIG_SIZE" "${TARGETS[*]}" > "$OUT/report.md"
    (cd "$OUT" && gnuplot "$OUT/msgs.gp") || log "gnuplot failed; no chart"
    log "done: $OUT/report.md, $OUT/msgs.svg (logs and configs: $WORK)"
    cat "$OUT/report.md"
}

main "$@"
