"""HTTP latency of the example services while their job catches up on a Kafka topic.

Run from the repository root (starts a broker with scripts/kafka.sh unless
``FLOWACTORS_KAFKA_BOOTSTRAP`` points at one)::

    python -m benchmarks.service_http                   # 1,000,000 records
    python -m benchmarks.service_http --records 200000

A topic is filled once with JSON records ``{"k": i % 10000, "v": i}``. Then each
example service (``examples.service_aiohttp``, ``examples.service_asgi``) runs
in a subprocess, once with the default time slice and once with slicing off
(``SERVICE_TIME_SLICE_MS=1e9``); its job reads the topic from the start. A
client in this process sends ``GET /counts/key-3`` every 5 ms (200 requests
per second, one at a time: a request due while one is outstanding goes out
when it is answered) and times each answer, while the job catches up (until the count of
``key-3`` reaches its final value) and for two seconds after. Printed:
latency p50/p99/max in both phases and the catch-up time; written to
``benchmarks/service_http_results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._broker import kafka_broker
from benchmarks.loop_lag import fill_topic, percentiles

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = Path(__file__).resolve().parent / "service_http_results.json"
SERVICES = ["examples.service_aiohttp", "examples.service_asgi"]
MODES = {"sliced": "5", "unsliced": "1e9"}
INTERVAL_S = 0.005


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(
    module: str, time_slice_ms: str, bootstrap: str, topic: str, records: int, after_s: float
) -> dict[str, Any]:
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="service-http-"))
    env = {
        **os.environ,
        "SERVICE_STATE": str(state),
        "SERVICE_KAFKA": bootstrap,
        "SERVICE_TOPIC": topic,
        "SERVICE_TIME_SLICE_MS": time_slice_ms,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "--port",
        str(port),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    final = sum(1 for i in range(records) if i % 10_000 % 10 == 3)
    url = f"http://127.0.0.1:{port}/counts/key-3"
    during: list[float] = []
    after: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            started = time.perf_counter()
            caught_up: float | None = None
            next_send = started
            while True:
                wait = next_send - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                next_send = max(next_send + INTERVAL_S, time.perf_counter())
                t = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        body = await response.json() if response.status == 200 else None
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.01)  # not listening yet
                    started = time.perf_counter()
                    continue
                latency = time.perf_counter() - t
                (during if caught_up is None else after).append(latency)
                if caught_up is None and body is not None and body["count"] >= final:
                    caught_up = time.perf_counter() - started
                    done_at = time.perf_counter() + after_s
                if caught_up is not None and time.perf_counter() >= done_at:
                    break
    finally:
        process.terminate()
        await process.wait()
        shutil.rmtree(state, ignore_errors=True)
    return {
        "catch_up_s": round(caught_up, 3),
        "during": percentiles(during),
        "after": percentiles(after),
    }


async def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    print(f"filling a topic with {args.records:,} records ...", file=sys.stderr, flush=True)
    topic = await fill_topic(bootstrap, args.records)
    results: dict[str, Any] = {}
    for module in SERVICES:
        for mode, slice_ms in MODES.items():
            print(f"{module}, {mode} ...", file=sys.stderr, flush=True)
            results[f"{module} {mode}"] = await measure(
                module, slice_ms, bootstrap, topic, args.records, args.after
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--after", type=float, default=2.0, help="seconds measured after catch-up")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    with kafka_broker() as bootstrap:
        results = asyncio.run(run(args, bootstrap))
    print(f"\n{'service, mode':<36}{'catch-up':>10}   during: p50 / p99 / max     after: p99")
    for name, r in results.items():
        d, a = r["during"], r["after"]
        print(
            f"{name:<36}{r['catch_up_s']:>9.2f}s   {d['p50_ms']:>7.2f} / {d['p99_ms']:>7.2f} / "
            f"{d['max_ms']:>7.1f} ms   {a['p99_ms']:>7.2f} ms"
        )
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
