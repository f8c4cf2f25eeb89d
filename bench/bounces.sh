#!/usr/bin/env bash
# Times `replyfix explain --dsn` (release build, one process per bounce, so
# process start is included) on every bounce of the labelled set in
# tests/fixtures/bounces/sisimai, on a generated 50 MB bounce, and on the
# whole folder at once. Prints the slowest bounces, the median, the 99th
# percentile and how many took over LIMIT_MS (default 100).
#
#   bench/bounces.sh            # about a minute after the release build
#   LIMIT_MS=50 bench/bounces.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT_MS=${LIMIT_MS:-100}
DIR=tests/fixtures/bounces/sisimai
nice -n 5 cargo build --release -q
BIN=target/release/replyfix
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ms_of() { # command... -> wall milliseconds (3 decimals)
  local s e
  s=$(date +%s%N)
  "$@" >/dev/null 2>&1 || true
  e=$(date +%s%N)
  echo "$(( (e - s) / 1000000 )).$(( ((e - s) / 1000) % 1000 ))"
}

for f in "$DIR"/*.eml; do
  echo "$(ms_of "$BIN" explain --json --dsn "$f") $(basename "$f")"
done | sort -n > "$TMP/times"

[ -r /proc/loadavg ] && echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
n=$(wc -l < "$TMP/times")
median=$(awk -v n="$n" 'NR == int((n + 1) / 2) { print $1 }' "$TMP/times")
p99=$(awk -v n="$n" 'NR == int(n * 0.99 + 0.999) { print $1 }' "$TMP/times")
over=$(awk -v l="$LIMIT_MS" '$1 + 0 > l' "$TMP/times" | wc -l)
echo "bounces: $n, median ${median} ms, p99 ${p99} ms, over ${LIMIT_MS} ms: $over"
echo "slowest:"
tail -5 "$TMP/times" | sed 's/^/  /'

# A 50 MB bounce: the report first, then a returned message of 50 MB.
big="$TMP/big.eml"
set +o pipefail # `yes` ends on SIGPIPE when `head` has enough
{
  printf 'From: MAILER-DAEMON@example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n'
  printf 'Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n'
  printf -- '--b\r\nContent-Type: text/plain\r\n\r\nThe mail system\r\n\r\n'
  printf '<kim@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1 user unknown\r\n\r\n'
  printf -- '--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: big\r\n\r\n'
  yes 'abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz012345' | head -c 52428800
} > "$big"
set -o pipefail
echo "50 MB bounce: $(ms_of "$BIN" explain --json --dsn "$big") ms"
if command -v /usr/bin/time >/dev/null; then
  /usr/bin/time -f "50 MB bounce: peak RSS %M KiB" "$BIN" explain --json --dsn "$big" >/dev/null
fi
echo "whole folder (--summary-only): $(ms_of "$BIN" explain --summary-only --dsn "$DIR") ms"
