"""End to end exactly-once: a worker process is SIGKILLed again and again; the output holds
every record exactly once.

200,000 keyed records in a 4-partition topic; the job keeps a running count per key (keyed
state) and writes through the exactly-once KafkaSink, checkpointing every 200 ms. The test
kills the worker with SIGKILL four times — three times when its output has grown by a random
amount since its start (so mid-stream, with transactions open and pre-committed), once at a
random moment soon after the start (during startup and transaction recovery) — and restarts it
each time; it resumes from its newest checkpoint. A read_committed consumer must then see
exactly the expected records: record *i* of key *k* once, with the count it had in the input.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.kafka._kafka import create_topic, output_offsets, produce, read_topic, unique
from tests.kafka.conftest import REPO

pytestmark = pytest.mark.kafka

RECORDS = 200_000
KEYS = 1000
PARTITIONS = 4


def spawn(
    bootstrap: str, inp: str, out: str, storage: Path, prefix: str, log: Any, *options: str
) -> Any:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kafka._e2e_worker",
            bootstrap,
            inp,
            out,
            str(storage),
            prefix,
            *options,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigkilled_worker_writes_every_record_exactly_once(
    bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("FLOWACTORS_E2E_SEED", time.time_ns() % 10**6)))
    inp, out = unique("e2e-in"), unique("e2e-out")
    await create_topic(bootstrap, inp, PARTITIONS)
    await create_topic(bootstrap, out, PARTITIONS)
    # Record i has key i % KEYS and goes to partition i % PARTITIONS: a key's records are in
    # one partition, in order, so the running count each one gets is known.
    pairs = (
        (str(i % KEYS).encode(), orjson.dumps({"i": i, "k": i % KEYS})) for i in range(RECORDS)
    )
    await produce(bootstrap, inp, pairs, partitions=PARTITIONS)
    expected = {(i, i % KEYS, i // KEYS + 1) for i in range(RECORDS)}

    storage, prefix = tmp_path / "checkpoints", unique("e2e")
    log_path = tmp_path / "worker.log"
    plan = ["progress", "early", "progress", "progress"]
    rng.shuffle(plan)
    kills: list[str] = []
    with open(log_path, "w") as log:  # noqa: ASYNC230 (a file for the workers to write to)
        for what in plan:
            proc = spawn(bootstrap, inp, out, storage, prefix, log)
            try:
                if what == "early":
                    await asyncio.sleep(rng.uniform(0.2, 0.6))  # while it starts or recovers
                else:
                    start = await output_offsets(bootstrap, out)
                    target = start + int(RECORDS * rng.uniform(0.03, 0.08))
                    while await output_offsets(bootstrap, out) < target:
                        assert proc.poll() is None, "the worker ended before it was killed"
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(rng.uniform(0, 0.3))
                assert proc.poll() is None, "the worker ended before it was killed"
            except BaseException:
                kill(proc)
                raise
            kill(proc)
            kills.append(f"{what}@{await output_offsets(bootstrap, out)}")
        proc = spawn(bootstrap, inp, out, storage, prefix, log)
        try:
            code = await asyncio.to_thread(proc.wait, 180)
        except BaseException:
            kill(proc)
            raise
    worker_log = log_path.read_text()
    assert code == 0, f"the last worker failed (kills: {kills}):\n{worker_log[-5000:]}"

    got = await read_topic(bootstrap, out, expected=RECORDS, settle=1.0, timeout=60)
    values = [orjson.loads(r.value) for r in got]
    seen = Counter((v["i"], v["k"], v["n"]) for v in values)
    duplicates = {r: c for r, c in seen.items() if c > 1}
    missing = expected - set(seen)
    wrong = set(seen) - expected
    assert not duplicates and not missing and not wrong, (
        f"kills {kills}: {len(values)} records, {len(duplicates)} duplicated "
        f"(e.g. {list(duplicates)[:3]}), {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
        f"{len(wrong)} unexpected (e.g. {sorted(wrong)[:3]})"
    )
    # The uncommitted view holds what the killed workers wrote and never committed.
    everything = await output_offsets(bootstrap, out)
    assert everything > RECORDS, "the kills should have left aborted transactions behind"
    assert len(kills) == 4


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_run_at_higher_parallelism_that_died_early_blocks_no_reader(
    bootstrap: str, tmp_path: Path
) -> None:
    # Killed at parallelism 2; restarted at 3 and killed before its first checkpoint (its
    # third subtask's transactions stay open: no checkpoint names them); finished at 1.
    # The last run must fence the third subtask's ids too, or read_committed readers wait
    # for transaction.timeout.ms (15 minutes) before they see what comes after.
    inp, out = unique("rescale-in"), unique("rescale-out")
    await create_topic(bootstrap, inp, PARTITIONS)
    await create_topic(bootstrap, out, PARTITIONS)
    pairs = (
        (str(i % KEYS).encode(), orjson.dumps({"i": i, "k": i % KEYS})) for i in range(RECORDS)
    )
    await produce(bootstrap, inp, pairs, partitions=PARTITIONS)
    storage, prefix = tmp_path / "checkpoints", unique("rescale")
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:  # noqa: ASYNC230 (a file for the workers to write to)
        for options, grow in (
            (["--parallelism", "2"], 0.15),
            (["--parallelism", "3", "--interval", "600000"], 0.05),
        ):
            proc = spawn(bootstrap, inp, out, storage, prefix, log, *options)
            try:
                target = await output_offsets(bootstrap, out) + int(RECORDS * grow)
                while await output_offsets(bootstrap, out) < target:
                    assert proc.poll() is None, "the worker ended before it was killed"
                    await asyncio.sleep(0.05)
            finally:
                kill(proc)
        proc = spawn(bootstrap, inp, out, storage, prefix, log, "--parallelism", "1")
        try:
            code = await asyncio.to_thread(proc.wait, 180)
        except BaseException:
            kill(proc)
            raise
    assert code == 0, f"the last worker failed:\n{log_path.read_text()[-5000:]}"
    got = await read_topic(bootstrap, out, expected=RECORDS, settle=1.0, timeout=60)
    seen = Counter((v["i"], v["k"], v["n"]) for v in (orjson.loads(r.value) for r in got))
    expected = {(i, i % KEYS, i // KEYS + 1) for i in range(RECORDS)}
    assert len(got) == RECORDS and set(seen) == expected
