"""Shared pieces of the checkpoint tests.

- A job whose output can be checked exactly: a generator of ``(key, index, value)``
  records keyed so that every key lives in one source subtask (so each key's
  records reach the keyed operator in index order at any parallelism), a running
  sum per key (``reduce``) that carries the index of the record that produced it,
  and the exactly-once file sink (``write_text``).
- Readers of what the file sink committed (``part-*`` files only; hidden
  ``.part-*.inprogress`` files never count) and of snapshot files on disk.
- Failure injection that fails a given record a given number of times.
"""

from __future__ import annotations

import asyncio
import pickle
import re
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from flowactors import StreamExecutionEnvironment
from flowactors.api.datastream import DataStream
from flowactors.checkpoint.storage import CheckpointStorage, CompletedCheckpoint
from flowactors.state.files import FileInfo

Record = tuple[tuple[int, int], int, int]

KEYS_PER_SUBTASK = 5


def source_subtask(i: int, count: int, parallelism: int) -> int:
    """The generator subtask that produces index ``i`` (contiguous ranges per subtask)."""
    for s in range(parallelism):
        if s * count // parallelism <= i < (s + 1) * count // parallelism:
            return s
    raise ValueError(i)


def make_record(i: int, count: int, parallelism: int, keys: int = KEYS_PER_SUBTASK) -> Record:
    """``((source subtask, i % keys), i, value)``: each key is produced by one source subtask."""
    return ((source_subtask(i, count, parallelism), i % keys), i, i % 11 + 1)


def add(a: Record, b: Record) -> Record:
    """Running sum that remembers the index of the latest record."""
    return (b[0], b[1], a[2] + b[2])


def key_of(r: Record) -> tuple[int, int]:
    return r[0]


def expected_running_sums(
    count: int, parallelism: int, keys: int = KEYS_PER_SUBTASK, indices: Any = None
) -> list[Record]:
    """What the running-sum job outputs, in index order (computed, not run); only the
    records of ``indices`` when given (a fresh state that sees just those)."""
    sums: dict[tuple[int, int], int] = {}
    out = []
    for i in range(count) if indices is None else indices:
        key, _, value = make_record(i, count, parallelism, keys)
        sums[key] = sums.get(key, 0) + value
        out.append((key, i, sums[key]))
    return out


def running_sum_job(
    env: StreamExecutionEnvironment,
    out: Path,
    count: int,
    rate: float | None = None,
    inject: Any = None,
    position: str = "before",
    source_parallelism: int | None = None,
    keys: int = KEYS_PER_SUBTASK,
) -> None:
    """generator -> [inject] -> key_by -> reduce(add) -> [inject] -> write_text(out).

    ``inject`` (a map function) runs chained with the source (``"before"``) or
    after the reduce (``"after"``).
    """
    p = source_parallelism or env.get_parallelism()
    stream: DataStream[Any] = env.from_generator(
        partial(make_record, count=count, parallelism=p, keys=keys), count=count, rate=rate
    ).uid("source")
    if source_parallelism is not None:
        stream = stream.set_parallelism(source_parallelism)
    if inject is not None and position == "before":
        stream = stream.map(inject).uid("inject")
    summed = stream.key_by(key_of).reduce(add).uid("sum")
    if inject is not None and position == "after":
        summed = summed.map(inject).uid("inject")
    summed.write_text(str(out)).uid("sink")


class InjectedFailure(RuntimeError):
    pass


class Injector:
    """Fails the record with index ``i`` ``times[i]`` times (counted across restarts).

    ``fn()`` is a plain closure: the runtime copies function objects per subtask
    with ``copy.deepcopy``, which keeps a plain function as it is, so every
    subtask and every restart shares this one injector.
    """

    def __init__(self, times: dict[int, int], index: int = 1) -> None:
        self.remaining = dict(times)
        self.index = index
        self.failures = 0

    def fn(self) -> Any:
        def inject(record: Any) -> Any:
            i = record[self.index]
            if self.remaining.get(i, 0) > 0:
                self.remaining[i] -= 1
                self.failures += 1
                raise InjectedFailure(f"injected failure at record {i}")
            return record

        return inject


# -- the file sink's output ----------------------------------------------------


def committed_files(directory: Path) -> list[Path]:
    """Finished part files; hidden in-progress files (``.part-*``) never count."""
    return sorted(p for p in directory.glob("part-*") if p.is_file())


def read_committed(directory: Path) -> list[list[str]]:
    """The lines of every finished part file, one list per file."""
    return [f.read_text().splitlines() for f in committed_files(directory)]


def committed_lines(directory: Path) -> list[str]:
    return [line for lines in read_committed(directory) for line in lines]


def lines_of(records: list[Any]) -> list[str]:
    """What the text sink writes for ``records`` (``str`` of each)."""
    return [str(r) for r in records]


def as_multiset(lines: list[str]) -> Counter[str]:
    return Counter(lines)


_NUMBER = re.compile(r"-?\d+")


def parse_sum(line: str) -> Record:
    """A running-sum job output line ``((s, k), index, total)`` (faster than literal_eval)."""
    s, k, i, total = map(int, _NUMBER.findall(line))
    return ((s, k), i, total)


def in_index_order(directory: Path) -> list[str]:
    """Part files concatenated in the order they were written (by their first index).

    Each file holds a contiguous run of the output of one subtask (parallelism 1),
    so this is the output sequence; a lost or repeated record shows up in it.
    """
    files = [lines for lines in read_committed(directory) if lines]
    files.sort(key=lambda lines: parse_sum(lines[0])[1])
    return [line for lines in files for line in lines]


def final_state(lines: list[str]) -> dict[Any, int]:
    """Per key, the running sum of the record with the largest index (the final state)."""
    latest: dict[Any, tuple[int, int]] = {}
    for line in lines:
        key, i, total = parse_sum(line)
        if key not in latest or i > latest[key][0]:
            latest[key] = (i, total)
    return {key: total for key, (_, total) in latest.items()}


# -- snapshot files -------------------------------------------------------------


async def read_snapshot(
    directory: Path | str, uid: str
) -> tuple[dict[str, dict[Any, Any]], dict[int, list[Any]]]:
    """(keyed tables merged over key groups, operator state per subtask) of ``uid``."""
    checkpoint = CompletedCheckpoint.load(Path(directory))
    meta = checkpoint.operators()[uid]
    tables: dict[str, dict[Any, Any]] = {}
    for info in meta.get("keyed", {}).values():
        payload = pickle.loads(await checkpoint.read(FileInfo.from_json(info)))
        for name, table in payload["tables"].items():
            tables.setdefault(name, {}).update(table)
    operator_state: dict[int, list[Any]] = {}
    for info in meta.get("operator_state", []):
        entries = pickle.loads(await checkpoint.read(FileInfo.from_json(info)))
        operator_state[int(info["subtask"])] = entries
    return tables, operator_state


def generator_positions(operator_state: dict[int, list[Any]]) -> dict[int, int]:
    """Per source subtask, the next index its bounded generator would produce."""
    positions = {}
    for subtask, splits in operator_state.items():
        assert len(splits) <= 1, splits
        if splits:
            positions[subtask] = splits[0][0]
    return positions


def completed_ids(storage: Path, job_name: str) -> list[int]:
    return CheckpointStorage(storage, job_name).completed_ids()


async def wait_for_checkpoints(
    storage: Path, job_name: str, n: int, timeout: float = 10.0
) -> list[int]:
    """Wait until at least ``n`` complete checkpoints of the job are on disk."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ids = completed_ids(storage, job_name)
        if len(ids) >= n:
            return ids
        if loop.time() > deadline:
            raise AssertionError(f"only {len(ids)} checkpoints completed in {timeout} s")
        await asyncio.sleep(0.01)


def log_messages(caplog: Any, logger_prefix: str = "flowactors") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(logger_prefix)]
