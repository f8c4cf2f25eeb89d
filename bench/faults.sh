#!/usr/bin/env bash
# Long form of the fault-injection campaign (tests/faults.rs, docs/protocol.md F1 F2
# P3; docs/reliability.md): MESSAGES messages (default 100,000) from
# concurrent clients through a release-built replyfix, every attempt with a
# randomly drawn fault (upstream killed, reset or stalled at each step and
# mid-DATA, after storing the message; client killed mid-DATA; smtp-sink
# -q/-Q), then the report: accepted, held, losses (must be 0), duplicates
# and their causes, replies replyfix made up, wall time.
#
#   bench/faults.sh                 # 100,000 messages
#   bench/faults.sh 20000           # fewer
#   FAULTS_SEED=0x1234 FAULTS_CLIENTS=50 bench/faults.sh   # repeat a run
#
# Needs Postfix's smtp-sink (apt-get install postfix). Loopback only. Exits
# non-zero if the campaign finds a loss or any other breach.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v smtp-sink >/dev/null; then
  echo "bench/faults.sh: smtp-sink not found (apt-get install postfix)" >&2
  exit 1
fi
export FAULTS_MESSAGES="${1:-100000}"
# A missing tool fails instead of skipping.
export CI=true

echo "faults: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $(nproc) cores"
# `cargo test --release` builds the replyfix binary the test drives in
# release too (a separate `cargo build --release` would build it again with
# other features: the test build unifies them with the dev-dependencies).
exec cargo test --release --test faults -- --ignored --exact mixed_faults_long_form_f1_f2_p3 --nocapture
