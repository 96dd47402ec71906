"""Rebalances of a scaled-out job on the real broker: suspended tasks, sticky assignment,
restores outside the rebalance and cancelled by it.

Two workers of the keyed-sum job (``tests/kafka/scaleout_worker.py``: 4-partition source ->
map -> key_by -> running sum -> exactly-once Kafka sink) run in this process, so the test
reads their :class:`ScaleOutStatistics`. The failure-free output is known exactly: for
every key with n records, ``[key, 1] ... [key, n]``, each once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka
import orjson
import pytest
from flowactors_kafka._client import TopicPartition

from flowactors import StreamExecutionEnvironment
from flowactors.spi import ScaleOutStatistics
from tests.kafka._kafka import create_topic, produce, read_topic, unique
from tests.kafka._scaleout import check_output, produce_keyed
from tests.kafka.scaleout_worker import build

pytestmark = pytest.mark.kafka

ALL_TASKS = {("in-0", p) for p in range(4)} | {("sum", r) for r in range(4)}
#: Dynamic members; a heartbeat every 100 ms notices a rebalance soon.
PROPERTIES = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 100}


async def start_worker(
    bootstrap: str, app: str, src: str, out: str, *, properties: dict[str, Any] | None = None
) -> Any:
    env = StreamExecutionEnvironment(parallelism=4)
    env.enable_checkpointing(200)
    env.enable_scale_out(
        bootstrap_servers=bootstrap, application_id=app, properties=properties or PROPERTIES
    )
    build(env, bootstrap, src, out)
    return await env.execute_async("keyed-sum")


def stats(client: Any) -> ScaleOutStatistics:
    got: ScaleOutStatistics = client.metrics().scale_out
    return got


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def shared(*clients: Any) -> Callable[[], bool]:
    """Whether the clients run every task between them, each exactly once, every one
    some, and none has a task restoring."""

    def check() -> bool:
        owned = [t for c in clients for t in c.assignment()]
        settled = all(c.assignment() and not stats(c).restoring for c in clients)
        return settled and len(owned) == len(set(owned)) == 8 and set(owned) == ALL_TASKS

    return check


async def stop_all(*clients: Any) -> None:
    for client in clients:
        if client is not None:
            await client.stop()


def open_kafka_clients() -> list[Any]:
    """aiokafka producers and consumers of this process still open."""
    gc.collect()
    kinds = (aiokafka.AIOKafkaProducer, aiokafka.AIOKafkaConsumer)
    return [o for o in gc.get_objects() if isinstance(o, kinds) and not o._closed]


async def test_a_task_given_back_to_its_worker_resumes_without_a_restore(
    bootstrap: str,
) -> None:
    src = await create_topic(bootstrap, unique("rb-in"), 4)
    out = await create_topic(bootstrap, unique("rb-out"), 4)
    app = unique("rb-app")
    a = b = None
    try:
        a = await start_worker(bootstrap, app, src, out)
        await produce_keyed(bootstrap, src, 0, 2000)
        await read_topic(bootstrap, out, expected=2000, timeout=60, settle=0)
        await until(lambda: set(a.assignment()) == ALL_TASKS, "the first worker")
        alone = stats(a)
        assert alone.restores == 4 and alone.resumed == 0  # its 4 (empty) sum changelogs

        b = await start_worker(bootstrap, app, src, out)
        await until(shared(a, b), "the second worker to take its share")
        joined_a, joined_b = stats(a), stats(b)
        # sticky and balanced: a kept four tasks (two of each stage) and restored none of
        # them, b restored the two sum tasks it took
        assert len(a.assignment()) == len(b.assignment()) == 4
        for stage in ("in-0", "sum"):
            assert sum(s == stage for s, _ in a.assignment()) == 2
        assert joined_a.restores == 4 and joined_a.resumed >= 4
        assert joined_b.restores == 2 and joined_b.restores_cancelled == 0
        print(
            f"join of a second worker: rebalance {joined_a.last_rebalance_seconds:.3f} s on "
            f"the first (restore {joined_a.restore_seconds:.3f} s in all), "
            f"{joined_b.last_rebalance_seconds:.3f} s on the second "
            f"(restore {joined_b.restore_seconds:.3f} s)"
        )
        await produce_keyed(bootstrap, src, 2000, 2000)
        check_output(await read_topic(bootstrap, out, expected=4000, timeout=60), 4000)

        # b leaves: a resumes what it kept and restores the sum tasks b ran in between
        kept = set(a.assignment())
        await b.stop()
        b = None
        await until(lambda: set(a.assignment()) == ALL_TASKS, "the first worker alone again")
        left = stats(a)
        assert left.resumed - joined_a.resumed == len(kept)
        assert left.restores - joined_a.restores == 2
        await produce_keyed(bootstrap, src, 4000, 2000)
        check_output(await read_topic(bootstrap, out, expected=6000, timeout=60), 6000)
    finally:
        await stop_all(a, b)
    assert not open_kafka_clients()


def hold_revocations(client: Any) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the worker of ``client`` linger in its next revocation callback (after it has
    suspended its tasks) until the returned ``release`` is set; ``held`` is set once it
    lingers. Longer than the group's rebalance timeout, this drops it from the next
    generation, as a long pause of a process would."""
    worker = client._runner.worker  # the real worker, its callback wrapped
    held, release = asyncio.Event(), asyncio.Event()
    revoke: Callable[[list[TopicPartition]], Awaitable[None]] = worker._on_revoked

    async def revoke_and_linger(tps: list[TopicPartition]) -> None:
        await revoke(tps)
        if not release.is_set():
            held.set()
            await release.wait()

    worker.consumer._listener._revoked = revoke_and_linger
    return held, release


async def test_a_task_that_changed_hands_while_suspended_is_restored(
    bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first worker suspends its tasks and then misses a generation: the second runs
    every task and commits; when the first gets its suspended tasks back, their input
    offsets have moved, so it restores them instead of resuming stale sums."""
    caplog.set_level(logging.INFO, logger="flowactors_kafka.scaleout")
    src = await create_topic(bootstrap, unique("rb-in"), 4)
    out = await create_topic(bootstrap, unique("rb-out"), 4)
    app = unique("rb-app")
    props = {**PROPERTIES, "rebalance.timeout.ms": 3000}
    a = b = None
    try:
        a = await start_worker(bootstrap, app, src, out, properties=props)
        await produce_keyed(bootstrap, src, 0, 2000)
        await read_topic(bootstrap, out, expected=2000, timeout=60, settle=0)
        await until(lambda: set(a.assignment()) == ALL_TASKS, "the first worker")
        held, release = hold_revocations(a)
        b = await start_worker(bootstrap, app, src, out, properties=props)
        await held.wait()  # a suspended its 8 tasks and lingers past the rebalance timeout
        await until(lambda: set(b.assignment()) == ALL_TASKS, "the second worker alone")
        await produce_keyed(bootstrap, src, 2000, 2000)  # b moves every task on
        check_output(await read_topic(bootstrap, out, expected=4000, timeout=60), 4000)
        before = stats(a)
        assert before.resumed == 0 and before.restores == 4
        release.set()  # a joins again, claiming the tasks it suspended
        await until(shared(a, b), "both workers sharing the tasks")
        after = stats(a)
        restored_sum_tasks = sum(s == "sum" for s, _ in a.assignment())
        assert after.resumed == 0, "a resumed a task that moved while it was suspended"
        assert after.restores - before.restores == restored_sum_tasks > 0
        assert "changed hands while suspended" in caplog.text
        assert stats(b).resumed >= 4  # b kept its share without restoring
        await produce_keyed(bootstrap, src, 4000, 2000)
        check_output(await read_topic(bootstrap, out, expected=6000, timeout=60), 6000)
    finally:
        await stop_all(a, b)
    assert not open_kafka_clients()


#: Distinct keys of the large-state test: each is one changelog entry.
STATE_KEYS = 200_000


async def test_a_rebalance_cancels_a_restore_and_the_output_stays_exact(
    bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker restoring 200,000 state entries; a second worker joins mid-restore: the
    rebalance does not wait for the restore, which is cancelled (nothing left running or
    open), the tasks are restored where they now run, and the running sums continue."""
    caplog.set_level(logging.INFO, logger="flowactors_kafka.scaleout")
    src = await create_topic(bootstrap, unique("rb-in"), 4)
    out = await create_topic(bootstrap, unique("rb-out"), 4)
    app = unique("rb-app")
    records = [
        (str(k).encode(), orjson.dumps({"k": k, "v": 1})) for k in range(STATE_KEYS)
    ]  # round-robin over the partitions
    await produce(bootstrap, src, records)
    a = b = None
    try:
        first = await start_worker(bootstrap, app, src, out)
        try:
            await read_topic(bootstrap, out, expected=STATE_KEYS, timeout=300, settle=0)
            await asyncio.sleep(1.0)  # the last state changes are committed
        finally:
            await first.stop()
        # Small fetches (one batch each) make the restore take a while on any machine.
        slow = {**PROPERTIES, "max.partition.fetch.bytes": 1024}
        a = await start_worker(bootstrap, app, src, out, properties=slow)
        await until(lambda: bool(stats(a).restoring), "a restore", timeout=120)
        restoring = stats(a).restoring
        began = time.monotonic()
        b = await start_worker(bootstrap, app, src, out, properties=slow)
        await until(lambda: stats(a).restores_cancelled > 0, "the restore to be cancelled")
        cancelled_after = time.monotonic() - began
        await until(shared(a, b), "both workers sharing the tasks", timeout=180)
        sa, sb = stats(a), stats(b)
        print(
            f"restoring {restoring}; cancelled {sa.restores_cancelled} restore(s) "
            f"{cancelled_after:.2f} s after the second worker started; restores a "
            f"{sa.restores} ({sa.restore_seconds:.2f} s), b {sb.restores} "
            f"({sb.restore_seconds:.2f} s); last rebalance a {sa.last_rebalance_seconds:.2f} s,"
            f" b {sb.last_rebalance_seconds:.2f} s"
        )
        assert "cancelled" in caplog.text
        assert sb.restores == sum(s == "sum" for s, _ in b.assignment())
        # the sums continue from the restored state: keys 0..999 once more
        again = [(str(k).encode(), orjson.dumps({"k": k, "v": 1})) for k in range(1000)]
        await produce(bootstrap, src, again)
        got = await read_topic(bootstrap, out, expected=STATE_KEYS + 1000, timeout=180, settle=1.0)
    finally:
        await stop_all(a, b)
    want = Counter((k, 1) for k in range(STATE_KEYS)) + Counter((k, 2) for k in range(1000))
    have = Counter(tuple(orjson.loads(r.value)) for r in got)
    assert have == want, (len(got), sorted((have - want).items())[:5], sorted(want - have)[:5])
    assert not open_kafka_clients()
