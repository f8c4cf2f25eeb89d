#!/usr/bin/env python3
"""Turns bench/run.sh's results.tsv into report.md (stdout), msgs.dat and
msgs.gp (the gnuplot script for msgs.svg).

Usage: report.py OUT_DIR [BIG_SIZE_BYTES] ["TARGET TARGET ..."]

results.tsv lines: metric <TAB> target <TAB> run <TAB> value
("invalid" as the metric marks a run that did not count; it is left out).
"""

import statistics
import sys
from collections import defaultdict

TARGETS = ["direct", "haproxy", "nginx", "replyfix", "rf_quick", "rf_minimal"]
NAMES = {"direct": "direct", "haproxy": "HAProxy", "nginx": "nginx mail", "replyfix": "replyfix",
         "replyfix_b": "replyfix B", "rf_quick": "replyfix quick start",
         "rf_minimal": "replyfix minimal.yaml"}
# The replyfix setups held to the targets: tuned (session limits raised) and
# the two a user gets first.
SETUPS = ["replyfix", "rf_quick", "rf_minimal"]
CONC = [1, 20, 100]


def load(path):
    data = defaultdict(list)
    by_run = defaultdict(dict)
    invalid = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            metric, target, run, value = parts
            if metric == "invalid":
                invalid.append((target, run, value))
                continue
            data[(metric, target)].append(float(value))
            by_run[(metric, target)][run] = float(value)
    return data, invalid, by_run


def spread(by_run, metric, a, b):
    """min–max over runs of a's value ÷ b's in the same run ("" if < 2)."""
    ra, rb = by_run.get((metric, a), {}), by_run.get((metric, b), {})
    ratios = [ra[r] / rb[r] for r in ra if r in rb and rb[r]]
    if len(ratios) < 2:
        return ""
    return f" ({min(ratios):.2f}–{max(ratios):.2f})"


def med(data, metric, target):
    v = data.get((metric, target))
    return statistics.median(v) if v else None


def fmt(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def rule_table(plain, heavy, cpu_plain, cpu_heavy):
    print("Rule-heavy run (replyfix, 20 sessions, 10 RCPTs per session, all rejected; "
          "no DATA): every RCPT answered `530 5.7.1 User unknown` (rule `user-unknown` "
          "remaps it to 550 5.1.1 and logs the rewrite) vs `550 5.1.1 User unknown` "
          "(no rule can match a 550):")
    print()
    print("| | plain (550) | rule-heavy (530 remapped) | rule-heavy ÷ plain |")
    print("|---|---:|---:|---:|")
    print(f"| sessions/s | {fmt(plain)} | {fmt(heavy)} | {ratio(heavy, plain)} |")
    print(f"| replyfix CPU µs/session | {fmt(cpu_plain, 1)} | {fmt(cpu_heavy, 1)} | {ratio(cpu_heavy, cpu_plain)} |")
    print()


def main():
    out = sys.argv[1]
    big = float(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    global TARGETS
    if len(sys.argv) > 3:
        TARGETS = sys.argv[3].split()
    data, invalid, by_run = load(f"{out}/results.tsv")
    # Derived: MB/s (10^6 bytes) for the big messages, CPU ms per big message.
    for t in TARGETS:
        if ("big_msgs", t) in data:
            data[("big_mbs", t)] = [v * big / 1e6 for v in data[("big_msgs", t)]]
        if ("cpu_big_msgs", t) in data:
            data[("cpu_big_ms", t)] = [v / 1000 for v in data[("cpu_big_msgs", t)]]
        for src, dst, f in (("big_msgs", "big_mbs", big / 1e6), ("cpu_big_msgs", "cpu_big_ms", 1e-3)):
            if (src, t) in by_run:
                by_run[(dst, t)] = {r: v * f for r, v in by_run[(src, t)].items()}

    rows = []
    for c in CONC:
        rows.append((f"msg/s, {c} session{'s' if c > 1 else ''}", f"msgs_c{c}", 0, True))
    rows.append((f"MB/s, {big / 1e6:g} MB messages", "big_mbs", 1, True))
    for c in CONC:
        rows.append((f"target CPU µs/msg, {c} session{'s' if c > 1 else ''}", f"cpu_msgs_c{c}", 1, False))
    rows.append((f"target CPU ms per {big / 1e6:g} MB message", "cpu_big_ms", 2, False))
    rows.append(("transaction latency p50, µs", "txn_p50", 0, False))
    rows.append(("transaction latency p99, µs", "txn_p99", 0, False))
    rows.append(("connect-to-greeting p50, µs", "greet_p50", 0, False))
    rows.append(("connect-to-greeting p99, µs", "greet_p99", 0, False))
    rows.append(("TLS msg/s, 1 session (a new TLS session per message)", "tls_msgs", 1, True))
    rows.append(("target CPU µs/msg, TLS", "cpu_tls_msgs", 1, False))
    rows.append(("peak RSS (VmHWM), KiB", "peak_rss_kib", 0, False))
    rows.append(("RSS per idle session after the greeting, KiB", "idle_kib_per_session", 2, False))
    rows.append(("RSS per session parked after RCPT, KiB", "parked_kib_per_session", 2, False))

    # Every proxy against HAProxy, and the tuned replyfix against direct.
    pairs = [(t, "haproxy") for t in TARGETS if "haproxy" in TARGETS and t not in ("direct", "haproxy")]
    if "direct" in TARGETS and "replyfix" in TARGETS:
        pairs.insert(0, ("replyfix", "direct"))
    print("| metric | " + " | ".join(NAMES.get(t, t) for t in TARGETS) + " | "
          + " | ".join(f"{NAMES.get(a, a)} ÷ {NAMES.get(b, b)}" for a, b in pairs) + " |")
    print("|---|" + "---:|" * (len(TARGETS) + len(pairs)))
    for label, metric, digits, _higher in rows:
        m = {t: med(data, metric, t) for t in TARGETS}
        print(f"| {label} | " + " | ".join(fmt(m[t], digits) for t in TARGETS) + " | "
              + " | ".join(ratio(m[a], m[b]) for a, b in pairs) + " |")
    print()

    plain = med(data, "rule_c20", "rf550")
    heavy = med(data, "rule_c20", "rf530")
    if plain is not None or heavy is not None:
        rule_table(plain, heavy, med(data, "cpu_rule_c20", "rf550"), med(data, "cpu_rule_c20", "rf530"))

    def check(label, got, want, ok):
        print(f"| {label} | {got} | {want} | {'**met**' if ok else 'not met'} |")

    if "haproxy" not in TARGETS:
        return finish(out, data, invalid)
    for setup in [t for t in SETUPS if t in TARGETS]:
        targets(setup, data, by_run, big, plain, heavy, check)
    finish(out, data, invalid)


def targets(setup, data, by_run, big, plain, heavy, check):
    """The issue-15 targets for one replyfix setup against HAProxy: the
    ratio of medians, then the min–max of the per-run ratios."""
    name = NAMES.get(setup, setup)
    print(f"Targets, {name} ÷ HAProxy from this run (median; range of the per-run ratios):")
    print()
    print("| target | ratio (or value) | wanted | |")
    print("|---|---:|---:|---|")

    def ratio_row(label, metric, want, higher):
        r, h = med(data, metric, setup), med(data, metric, "haproxy")
        if not (r and h):
            return
        q = r / h
        ok = q >= want if higher else q <= want
        sign = "≥" if higher else "≤"
        check(label, f"{q:.2f}×{spread(by_run, metric, setup, 'haproxy')} ({r:,.0f} vs {h:,.0f})",
              f"{sign} {want:.2f}×", ok)

    for c in CONC:
        if med(data, f"msgs_c{c}", setup) is None and setup != "replyfix":
            print(f"| msg/s, {c} sessions | not run: over the default per-client limit (50) | — | — |")
            continue
        ratio_row(f"msg/s, {c} session{'s' if c > 1 else ''}", f"msgs_c{c}", 1.0, True)
    for c in CONC:
        ratio_row(f"CPU µs/msg, {c} session{'s' if c > 1 else ''}", f"cpu_msgs_c{c}", 1.0, False)
    ratio_row(f"MB/s, {big / 1e6:g} MB messages", "big_mbs", 1.0, True)
    ratio_row(f"CPU per {big / 1e6:g} MB message", "cpu_big_ms", 1.0, False)
    ratio_row("transaction latency p50", "txn_p50", 1.1, False)
    ratio_row("connect-to-greeting p50", "greet_p50", 1.1, False)
    for metric, label in (("idle_kib_per_session", "RSS per session after the greeting"),
                          ("parked_kib_per_session", "RSS per session parked after RCPT")):
        r, h = med(data, metric, setup), med(data, metric, "haproxy")
        if r is not None:
            check(label, f"{r:.2f} KiB" + (f" (HAProxy {h:.2f})" if h is not None else ""), "≤ 4 KiB", r <= 4.0)
    if setup == "replyfix":
        r, h = med(data, "cpu_tls_msgs", "replyfix"), med(data, "cpu_tls_msgs", "haproxy")
        if r and h:
            check("CPU µs/msg, TLS both legs (not an issue target)", f"{r / h:.2f}× ({r:.0f} vs {h:.0f})", "—", r <= h)
        if plain and heavy:
            check("rule-heavy ÷ plain, sessions/s", f"{heavy / plain:.2f}×", "≥ 0.95×", heavy / plain >= 0.95)
    print()


def finish(out, data, invalid):
    counts = defaultdict(int)
    for (metric, t), v in data.items():
        counts[len(v)] += 1
    print(f"Valid runs per cell: {', '.join(f'{n} runs: {k} cells' for n, k in sorted(counts.items()))}.")
    if invalid:
        print()
        print("Invalid runs (left out of the medians):")
        print()
        for t, run, why in invalid:
            print(f"- {t} run {run}: {why}")

    with open(f"{out}/msgs.dat", "w") as f:
        f.write("# sessions " + " ".join(TARGETS) + "\n")
        for c in CONC:
            f.write(f"{c} " + " ".join(fmt(med(data, f'msgs_c{c}', t), 1).replace(",", "").replace("—", "NaN")
                                       for t in TARGETS) + "\n")
    with open(f"{out}/msgs.gp", "w") as f:
        f.write(
            'set terminal svg size 720,420 dynamic font "sans,12"\n'
            'set output "msgs.svg"\n'
            'set title "Messages/s by concurrent sessions (1 KiB, 10 RCPT, one session per message; median)"\n'
            'set xlabel "concurrent sessions"\nset ylabel "messages/s"\n'
            'set style data histogram\nset style histogram cluster gap 1\n'
            'set style fill solid 0.8 border -1\nset boxwidth 0.9\n'
            'set key outside right top\nset grid ytics\nset yrange [0:*]\n'
            + "plot " + ", ".join(
                f'"msgs.dat" using {i + 2}' + (":xtic(1)" if i == 0 else "") + f' title "{NAMES.get(t, t)}"'
                for i, t in enumerate(TARGETS)) + "\n"
        )


if __name__ == "__main__":
    main()
