"""CPU of finding a scaled-out task's state changes at a commit: compared vs tracked.

    python -m benchmarks.changelog_commit [--keys 100000 1000000] [--rocksdb-keys 100000]

A keyed running sum's table holds ``keys`` entries; per commit interval 1% of the keys
change, then the task's :class:`~flowactors.runtime.changelog.KeyedStateLog` finds
the changes. *Compared* is a backend that does not track (every entry pickled and
compared with the last commit: what scale-out did before); *tracked* is the backend a
scaled-out task gets now (:class:`~flowactors.runtime.changelog.ChangeTrackingStateBackend`).
Reported: CPU (process time) per commit, median of 5 intervals, and the CPU of the
writes themselves (what tracking adds on the per-record path of scaled-out tasks).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from typing import Any

from flowactors.runtime.changelog import ChangeTrackingStateBackend, KeyedStateLog
from flowactors.state.backend import HeapKeyedStateBackend
from flowactors.state.rocksdb import RocksDBStateBackend

MAX_P = 128
INTERVALS = 5


def measure(backend: Any, keys: int) -> tuple[float, float, int]:
    """(median CPU seconds per commit, CPU seconds per changed entry's write, records)."""
    log = KeyedStateLog({"sum": backend}, MAX_P)
    table = backend.table("value")
    for key in range(keys):
        table[key] = key
    log.changes()  # the first commit writes everything
    rng = random.Random(7)
    commits: list[float] = []
    writes: list[float] = []
    records = 0
    for _ in range(INTERVALS):
        changed = rng.sample(range(keys), keys // 100)
        began = time.process_time()
        for key in changed:
            table[key] = table[key] + 1
        writes.append((time.process_time() - began) / len(changed))
        began = time.process_time()
        records = len(log.changes())
        commits.append(time.process_time() - began)
        assert records == len(changed), (records, len(changed))
    return statistics.median(commits), statistics.median(writes), records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rocksdb-keys", type=int, nargs="*", default=[100_000])
    args = parser.parse_args()
    print(
        f"{'backend':10} {'keys':>9} {'changes':>8} {'compared':>12} {'tracked':>12} "
        f"{'write compared':>15} {'write tracked':>14}"
    )
    runs: list[tuple[str, int]] = [("heap", k) for k in args.keys]
    runs += [("rocksdb", k) for k in args.rocksdb_keys]
    for kind, keys in runs:
        with tempfile.TemporaryDirectory() as tmp:
            rocksdb = RocksDBStateBackend(local_dir=tmp, memory_budget_mb=64)
            inner = rocksdb if kind == "rocksdb" else None
            compared_backend = (
                HeapKeyedStateBackend(range(MAX_P), MAX_P, lambda: 0)
                if inner is None
                else inner.create(range(MAX_P), MAX_P, lambda: 0, "compared")
            )
            tracked_backend = ChangeTrackingStateBackend(inner).create(
                range(MAX_P), MAX_P, lambda: 0, "tracked"
            )
            try:
                compared, write_c, n = measure(compared_backend, keys)
                tracked, write_t, _ = measure(tracked_backend, keys)
            finally:
                for b in (compared_backend, tracked_backend):
                    close = getattr(b, "close", None)
                    if close is not None:
                        close()
        print(
            f"{kind:10} {keys:>9,} {n:>8,} {compared * 1000:>10.1f}ms {tracked * 1000:>10.1f}ms "
            f"{write_c * 1e9:>13.0f}ns {write_t * 1e9:>12.0f}ns"
        )


if __name__ == "__main__":
    main()
