#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licences, banned crates
# (a second TLS provider), and sources (crates.io only).
#
#   scripts/deny.sh            run `cargo deny check licenses bans sources`
#
# Advisories need the RustSec advisory database, which is fetched over the
# network; where the network allows, run:
#   cargo deny check advisories
# Installing the tool: `cargo install cargo-deny --locked` (a recent release:
# deny.toml names the Unicode-3.0 licence, which cargo-deny 0.14 does not
# know, and 0.14.2 also panics reading this edition-2024 lock file); 0.20.2
# builds in about 10 minutes on 2 idle cores. `.ci/run` installs it and
# sets REQUIRE_CARGO_DENY=1.
#
# Exit status: cargo-deny's when it ran; 0 with a "skipped" line when it is
# not installed, unless REQUIRE_CARGO_DENY=1, then 1.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
    if [ "${REQUIRE_CARGO_DENY:-0}" = "1" ]; then
        echo "cargo-deny is not installed (REQUIRE_CARGO_DENY=1)" >&2
        exit 1
    fi
    echo "skipped: cargo-deny not installed (cargo install cargo-deny --locked)"
    exit 0
fi
cargo deny --version
exec cargo deny check licenses bans sources
