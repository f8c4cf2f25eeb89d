#!/usr/bin/env python3
"""Small SMTP clients for bench/run.sh (standard library only).

latency HOST PORT COUNT
    COUNT sequential transactions (connect, EHLO, MAIL, RCPT, DATA, a 1 KiB
    body, QUIT). Prints one line of medians in microseconds:
    `greet_p50 greet_p99 txn_p50 txn_p99 ok_count`.
    connect-to-greeting = from connect() until the whole greeting is read;
    transaction = from connect() until the reply to QUIT is read.

idle HOST PORT COUNT READY_FILE HOLD_SECONDS [greeting|rcpt] [SOURCES]
    Opens COUNT sessions and reads each greeting; with `rcpt` each session
    then sends EHLO, MAIL and RCPT (each reply read, each must be 250): the
    state of a session waiting for a slow upstream. Writes the number of
    sessions that got that far to READY_FILE, then holds them open (idle)
    until HOLD_SECONDS pass or READY_FILE.stop exists, and closes them.
    With SOURCES (IPv4 loopback only) the sessions come from 127.0.0.2,
    127.0.0.3, ... in turn, SOURCES addresses in all, so that a per-client
    session limit (replyfix's default: 50) is not what gets measured.

tls HOST PORT COUNT starttls|implicit CAFILE
    COUNT sequential transactions over TLS, a new TLS session each (no
    resumption, as between MTAs): `starttls` reads the greeting, sends EHLO
    and STARTTLS, then EHLO again inside TLS; `implicit` starts TLS at
    connect. The certificate is verified against CAFILE. Prints the number
    of transactions whose end of data got 250.

Every wait has a timeout; every loop is bounded by COUNT.
"""

import os
import socket
import ssl
import sys
import time

TIMEOUT = 10.0
BODY = (b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * 13)[:1024] + b"\r\n.\r\n"
# One transaction after the greeting: each line and the reply it must get.
TRANSACTION = [
    (b"EHLO bench.local\r\n", 250),
    (b"MAIL FROM:<a@bench.local>\r\n", 250),
    (b"RCPT TO:<b@bench.local>\r\n", 250),
    (b"DATA\r\n", 354),
    (BODY, 250),
    (b"QUIT\r\n", 221),
]


def read_reply(sock, buf):
    """Reads one complete (possibly multi-line) reply; returns (code, rest)."""
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if len(line) >= 4 and line[3:4] == b"-":
                continue
            return int(line[:3]), buf
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed while waiting for a reply")
        buf += chunk


def transaction(host, port):
    t0 = time.perf_counter()
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        code, buf = read_reply(sock, b"")
        t_greet = time.perf_counter()
        if code != 220:
            raise ConnectionError(f"greeting {code}")
        for line, want in TRANSACTION:
            sock.sendall(line)
            code, buf = read_reply(sock, buf)
            if code != want:
                raise ConnectionError(f"{line[:4]!r}: {code}")
        t_end = time.perf_counter()
    finally:
        sock.close()
    return (t_greet - t0) * 1e6, (t_end - t0) * 1e6


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    i = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[i]


def latency(host, port, count):
    greets, txns = [], []
    for _ in range(count):
        try:
            g, t = transaction(host, port)
        except (OSError, ConnectionError) as e:
            print(f"latency: {e}", file=sys.stderr)
            continue
        greets.append(g)
        txns.append(t)
    print(
        f"{pct(greets, 50):.0f} {pct(greets, 99):.0f} "
        f"{pct(txns, 50):.0f} {pct(txns, 99):.0f} {len(txns)}"
    )
    return 0 if len(txns) == count else 1


# What a session parked after RCPT has sent, and the reply each must get.
PARK_AFTER_RCPT = TRANSACTION[:3]


def idle(host, port, count, ready_file, hold, stage="greeting", sources=0):
    socks = []
    greeted = 0
    deadline = time.monotonic() + 120
    for i in range(count):
        source = (f"127.0.0.{2 + i % sources}", 0) if sources else None
        try:
            s = socket.create_connection((host, port), timeout=TIMEOUT, source_address=source)
        except OSError as e:
            print(f"idle: connect: {e}", file=sys.stderr)
            break
        socks.append(s)
    for s in socks:
        if time.monotonic() > deadline:
            break
        try:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            code, buf = read_reply(s, b"")
            if code != 220:
                raise ConnectionError(f"greeting {code}")
            if stage == "rcpt":
                for line, want in PARK_AFTER_RCPT:
                    s.sendall(line)
                    code, buf = read_reply(s, buf)
                    if code != want:
                        raise ConnectionError(f"{line[:4]!r}: {code}")
            greeted += 1
        except (OSError, ConnectionError) as e:
            print(f"idle: {stage}: {e}", file=sys.stderr)
    tmp = ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{greeted}\n")
    os.replace(tmp, ready_file)
    stop = ready_file + ".stop"
    end = time.monotonic() + hold
    while time.monotonic() < end and not os.path.exists(stop):
        time.sleep(0.05)
    for s in socks:
        s.close()
    return 0 if greeted == count else 1


def tls_transaction(host, port, mode, context):
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        buf = b""
        if mode == "implicit":
            sock = context.wrap_socket(sock, server_hostname="localhost")
        code, buf = read_reply(sock, buf)
        if code != 220:
            raise ConnectionError(f"greeting {code}")
        if mode == "starttls":
            for line, want in ((b"EHLO bench.local\r\n", 250), (b"STARTTLS\r\n", 220)):
                sock.sendall(line)
                code, buf = read_reply(sock, buf)
                if code != want:
                    raise ConnectionError(f"{line[:8]!r}: {code}")
            if buf:
                raise ConnectionError("bytes after the 220 to STARTTLS")
            sock = context.wrap_socket(sock, server_hostname="localhost")
        for line, want in TRANSACTION:
            sock.sendall(line)
            code, buf = read_reply(sock, buf)
            if code != want:
                raise ConnectionError(f"{line[:4]!r}: {code}")
    finally:
        sock.close()


def tls(host, port, count, mode, cafile):
    context = ssl.create_default_context(cafile=cafile)
    ok = 0
    for _ in range(count):
        try:
            tls_transaction(host, port, mode, context)
            ok += 1
        except (OSError, ConnectionError, ssl.SSLError) as e:
            print(f"tls: {e}", file=sys.stderr)
    print(ok)
    return 0 if ok == count else 1


def main(argv):
    if len(argv) >= 5 and argv[1] == "latency":
        return latency(argv[2], int(argv[3]), int(argv[4]))
    if len(argv) >= 7 and argv[1] == "idle":
        stage = argv[7] if len(argv) > 7 else "greeting"
        sources = int(argv[8]) if len(argv) > 8 else 0
        if stage not in ("greeting", "rcpt"):
            print(__doc__, file=sys.stderr)
            return 2
        return idle(argv[2], int(argv[3]), int(argv[4]), argv[5], float(argv[6]), stage, sources)
    if len(argv) >= 7 and argv[1] == "tls":
        return tls(argv[2], int(argv[3]), int(argv[4]), argv[5], argv[6])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
