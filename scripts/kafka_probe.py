#!/usr/bin/env python3
"""Stdlib-only helpers for scripts/kafka.sh (no aiokafka needed).

kafka_probe.py cluster-id                 a new KRaft cluster id (as kafka-storage random-uuid)
kafka_probe.py free-port HOST             print a free TCP port on HOST
kafka_probe.py port-free HOST PORT        exit 0 if PORT can be bound on HOST
kafka_probe.py wait HOST:PORT [--timeout S] [--pid P]
    wait until the broker answers a Metadata request listing itself (exit 0), or time out
    (exit 1); gives up early if process P dies
kafka_probe.py wait-port HOST:PORT [--timeout S] [--pid P]
    wait until HOST:PORT accepts TCP connections
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import struct
import sys
import time
import uuid

API_METADATA = 3
API_VERSIONS = 18
CLIENT_ID = b"flowactors-kafka-probe"


def cluster_id() -> str:
    # Kafka's Uuid.randomUuid().toString(): url-safe base64 of the 16 bytes, without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Kafka binds with SO_REUSEADDR, so a port left in TIME_WAIT is free for it too.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> _Reader:
    # Request header v1: api_key, api_version, correlation_id, client_id (non-flexible).
    header = struct.pack(">hhih", api_key, version, corr, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != corr:
        raise ConnectionError("correlation id mismatch")
    return reader


def metadata_ready(host: str, port: int, timeout: float = 5.0) -> tuple[bool, str]:
    """(ready, detail): the broker answers ApiVersions and a Metadata request that lists it."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        r = _request(sock, API_VERSIONS, 0, 1, b"")
        err = r.take(">h")
        if err != 0:
            return False, f"ApiVersions error {err}"
        ranges = {}
        for _ in range(r.take(">i")):
            key, lo, hi = r.take(">h"), r.take(">h"), r.take(">h")
            ranges[key] = (lo, hi)
        if API_METADATA not in ranges:
            return False, "no Metadata API"
        lo, hi = ranges[API_METADATA]
        candidates = [v for v in range(1, 9) if lo <= v <= hi]
        if not candidates:
            # Only flexible versions left (not spoken here): ApiVersions answering is enough.
            return True, f"ApiVersions ok (Metadata v{lo}-v{hi} not probed)"
        v = max(candidates)
        body = struct.pack(">i", 0)  # topics: empty array (v1+: null would mean all topics)
        if v >= 4:
            body += b"\x00"  # allow_auto_topic_creation
        if v >= 8:
            body += b"\x00\x00"  # include cluster / topic authorized operations
        r = _request(sock, API_METADATA, v, 2, body)
        if v >= 3:
            r.take(">i")  # throttle_time_ms
        brokers = []
        for _ in range(r.take(">i")):
            node_id = r.take(">i")
            bhost = r.string()
            bport = r.take(">i")
            r.string()  # rack
            brokers.append((node_id, bhost, bport))
        if v >= 2:
            r.string()  # cluster_id
        controller = r.take(">i")
        if not brokers:
            return False, "metadata lists no broker yet"
        if controller < 0:
            return False, f"no controller yet (brokers {brokers})"
        return True, f"brokers {brokers}, controller {controller} (Metadata v{v})"


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def wait(addr: str, timeout: float, pid: int | None, metadata: bool) -> int:
    host, port = _split(addr)
    deadline = time.monotonic() + timeout
    detail = "not tried"
    while time.monotonic() < deadline:
        if not _alive(pid):
            print(f"kafka_probe: process {pid} exited", file=sys.stderr)
            return 1
        try:
            if metadata:
                ok, detail = metadata_ready(host, port)
            else:
                with socket.create_connection((host, port), timeout=2):
                    ok, detail = True, "port open"
            if ok:
                print(f"kafka_probe: {addr} ready: {detail}", file=sys.stderr)
                return 0
        except (OSError, struct.error) as exc:
            detail = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    print(f"kafka_probe: {addr} not ready after {timeout} s ({detail})", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cluster-id")
    p = sub.add_parser("free-port")
    p.add_argument("host")
    p = sub.add_parser("port-free")
    p.add_argument("host")
    p.add_argument("port", type=int)
    for name in ("wait", "wait-port"):
        p = sub.add_parser(name)
        p.add_argument("addr")
        p.add_argument("--timeout", type=float, default=90.0)
        p.add_argument("--pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "cluster-id":
        print(cluster_id())
        return 0
    if args.cmd == "free-port":
        print(free_port(args.host))
        return 0
    if args.cmd == "port-free":
        return 0 if port_free(args.host, args.port) else 1
    return wait(args.addr, args.timeout, args.pid, metadata=args.cmd == "wait")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
