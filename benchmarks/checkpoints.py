"""What checkpoints cost: throughput overhead, synchronous pause, snapshot time and size.

Run from the repository root::

    python -m benchmarks.checkpoints                 # everything, writes benchmarks/checkpoints.json
    python -m benchmarks.checkpoints --keys 200000   # a smaller state

1. **Overhead**: P2 (key_by + running sum, 10,000 keys, 3,000,000 events from a
   generator) with checkpoints every second against the same job without
   checkpoints, alternating, median of 3 each.
2. **Snapshot of 1,000,000 keys of value state**, in-memory and RocksDB backends:
   the longest synchronous pause of a subtask and the total time until the
   checkpoint is complete, and its size.
3. **Incremental checkpoint** (RocksDB): the bytes a checkpoint writes after 1% of
   the keys changed, against the full size of the state it refers to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from flowactors import KeyedProcessFunction, StreamExecutionEnvironment, ValueStateDescriptor
from flowactors.spi import (
    InputStatus,
    ReaderOutput,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
)
from flowactors.state import RocksDBStateBackend

DEFAULT_JSON = Path(__file__).resolve().parent / "checkpoints.json"


class Discard(Sink[Any]):
    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _DiscardWriter()


class _DiscardWriter(SinkWriter[Any]):
    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        pass


# -- 1. overhead ----------------------------------------------------------------


def event(i: int) -> tuple[int, int]:
    return (i % 10_000, 1)


def running_sum(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0], a[1] + b[1])


def overhead_job(events: int, storage: Path | None) -> float:
    env = StreamExecutionEnvironment()
    if storage is not None:
        env.enable_checkpointing(1000, storage=storage, resume="none")
    env.from_generator(event, count=events).key_by(lambda e: e[0]).reduce(running_sum).sink_to(
        Discard()
    )
    start = time.perf_counter()
    env.execute_blocking("overhead")
    return time.perf_counter() - start


# -- 2/3. snapshots of a large state -----------------------------------------------


class FedSource(Source[int]):
    """Emits the batches put into its queue; stays open until the job is cancelled."""

    max_parallelism = 1

    def __init__(self, queue: asyncio.Queue[list[int]]) -> None:
        self.queue = queue

    def create_reader(self, context: SourceReaderContext) -> SourceReader[int]:
        return _FedReader(self.queue)


class _FedReader(SourceReader[int]):
    def __init__(self, queue: asyncio.Queue[list[int]]) -> None:
        self.queue = queue

    async def poll_next(self, output: ReaderOutput[int]) -> InputStatus:
        try:
            batch = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return InputStatus.NOTHING_AVAILABLE
        await output.collect_batch(batch)
        return InputStatus.MORE_AVAILABLE

    async def is_available(self) -> None:
        await asyncio.sleep(0.01)


class Remember(KeyedProcessFunction[int, int, None]):
    def open(self, ctx: Any) -> None:
        self.value = ctx.get_state(ValueStateDescriptor("value"))

    def process_element(self, value: int, ctx: Any, out: Any) -> None:
        self.value.update(value)


async def _wait_for_checkpoint(client: Any, after: int, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = client.checkpoint_stats()
        if stats is not None and stats.checkpoint_id > after:
            return stats
        await asyncio.sleep(0.02)
    raise TimeoutError("no checkpoint completed")


async def snapshot_costs(keys: int, backend: str, storage: Path) -> dict[str, Any]:
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    env = StreamExecutionEnvironment()
    if backend == "rocksdb":
        env.set_state_backend(RocksDBStateBackend(memory_budget_mb=64))
    env.enable_checkpointing(60_000, storage=storage, resume="none")
    env.from_source(FedSource(queue), name="keys").key_by(lambda k: k).process(Remember()).sink_to(
        Discard()
    )
    client = await env.execute_async(f"snapshot-{backend}")
    coordinator = client._execution.coordinator
    step = 10_000
    for lo in range(0, keys, step):
        queue.put_nowait(list(range(lo, min(keys, lo + step))))
    while not queue.empty():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    coordinator.trigger(is_savepoint=False)
    full = await _wait_for_checkpoint(client, 0)
    result: dict[str, Any] = {
        "backend": backend,
        "keys": keys,
        "sync_pause_ms": round(full.max_sync_pause_ms, 2),
        "snapshot_ms": round(full.duration_ms, 1),
        "size_bytes": full.size_bytes,
        "written_bytes": full.written_bytes,
    }
    changed = keys // 100
    queue.put_nowait([k * 97 % keys for k in range(changed)])
    while not queue.empty():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    coordinator.trigger(is_savepoint=False)
    second = await _wait_for_checkpoint(client, full.checkpoint_id)
    result["after_1pct_changed"] = {
        "sync_pause_ms": round(second.max_sync_pause_ms, 2),
        "snapshot_ms": round(second.duration_ms, 1),
        "size_bytes": second.size_bytes,
        "written_bytes": second.written_bytes,
    }
    await client.cancel()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="flowactors-bench-"))
    try:
        plain, checkpointed = [], []
        for i in range(args.repeats):
            plain.append(overhead_job(args.events, None))
            checkpointed.append(overhead_job(args.events, work / f"overhead-{i}"))
        p, c = statistics.median(plain), statistics.median(checkpointed)
        out["overhead"] = {
            "events": args.events,
            "keys": 10_000,
            "interval_ms": 1000,
            "without_s": [round(x, 3) for x in plain],
            "with_s": [round(x, 3) for x in checkpointed],
            "ratio": round(p / c, 3),
            "target": 0.9,
        }
        print(
            f"P2 with 1 s checkpoints: {args.events / c / 1e6:.2f} M/s vs "
            f"{args.events / p / 1e6:.2f} M/s without: {p / c:.2f}x (target >= 0.9x)"
        )
        for backend in ("memory", "rocksdb"):
            result = asyncio.run(snapshot_costs(args.keys, backend, work / f"snap-{backend}"))
            out[f"snapshot_{backend}"] = result
            inc = result["after_1pct_changed"]
            print(
                f"{backend:>8}: {args.keys:,} keys: synchronous pause {result['sync_pause_ms']} ms, "
                f"snapshot {result['snapshot_ms']} ms, {result['size_bytes'] / 1e6:.1f} MB; after 1% "
                f"changed: pause {inc['sync_pause_ms']} ms, snapshot {inc['snapshot_ms']} ms, "
                f"wrote {inc['written_bytes'] / 1e6:.2f} MB of {inc['size_bytes'] / 1e6:.1f} MB"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
