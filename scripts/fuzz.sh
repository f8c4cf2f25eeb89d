#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time each (default 60 s):
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Uses cargo-fuzz (libFuzzer) on the stable toolchain with
# `--sanitizer none` (the crate forbids unsafe code; AddressSanitizer would
# need nightly's -Zsanitizer). Seeds come from fuzz/seeds/TARGET, the
# working corpus grows in fuzz/corpus/TARGET (not committed), crashes land
# in fuzz/artifacts/TARGET. Exit status is non-zero when a target fails.
#
# FUZZ_SEED=N fixes libFuzzer's random seed: the same binary then tries the
# same inputs in the same order, so a short CI run covers a prefix of what a
# longer local run with that seed already checked.
#
# When cargo-fuzz is missing: prints "skipped" and exits 0, unless
# REQUIRE_CARGO_FUZZ=1 (then 1). Install: cargo install cargo-fuzz --locked
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(reply_parser command_classify data_framing rules_judge session_core)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${REQUIRE_CARGO_FUZZ:-0}" = "1" ]; then
        echo "cargo-fuzz is not installed (REQUIRE_CARGO_FUZZ=1)" >&2
        exit 1
    fi
    echo "skipped: cargo-fuzz not installed (cargo install cargo-fuzz --locked)"
    exit 0
fi

cargo fuzz build -s none -O
failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz: $t for ${secs}s"
    if cargo fuzz run -s none -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -dict=fuzz/smtp.dict -max_total_time="$secs" -print_final_stats=1 \
        ${FUZZ_SEED:+-seed="$FUZZ_SEED"} \
        >"fuzz/$t.log" 2>&1; then
        echo "fuzz: $t clean: $(grep -E '^stat::number_of_executed_units' "fuzz/$t.log" | awk '{print $2}') runs"
    else
        echo "fuzz: $t FAILED, see fuzz/$t.log and fuzz/artifacts/$t" >&2
        tail -n 40 "fuzz/$t.log" >&2
        failed=1
    fi
done
exit "$failed"
