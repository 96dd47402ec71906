"""The Prometheus families of a running job, read through a registry as a scrape would."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from flowactors import RestartStrategies, StreamExecutionEnvironment
from flowactors.monitoring import JobCollector, JobMonitor, monitor_for
from flowactors.state import RocksDBStateBackend
from tests.monitoring._jobs import (
    KEYS,
    KeepingSink,
    build_counting_job,
    start_counting_job,
    wait_until,
)


def scrape(registry: CollectorRegistry) -> dict[str, list[Sample]]:
    text = generate_latest(registry).decode()
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def by_vertex(samples: list[Sample], vertex: str) -> list[Sample]:
    return [s for s in samples if s.labels.get("vertex") == vertex]


def per_operator(samples: list[Sample]) -> dict[tuple[str, str], float]:
    """``(operator, subtask) -> value``"""
    return {(s.labels["operator"], s.labels["subtask"]): s.value for s in samples}


async def test_families_of_a_running_job_have_plausible_values(tmp_path: Path) -> None:
    client = await start_counting_job(tmp_path, parallelism=2, rate=2000)
    monitor = JobMonitor(client)
    registry = CollectorRegistry()
    registry.register(JobCollector(monitor))
    monitor.start()
    try:
        await wait_until(lambda: len(monitor.snapshot().checkpoints) >= 2)
        families = scrape(registry)
    finally:
        await monitor.stop()
        await client.cancel()

    vertices = {v.name for v in monitor.vertices}
    # Parallelism 2 everywhere: the source chains the timestamps and the map; the
    # keyed reduce and its sink are a second vertex behind the hash edge.
    assert vertices == {
        "Numbers -> Timestamps/Watermarks -> Counted",
        "Sums -> Keep",
    }
    source, keyed = "Numbers -> Timestamps/Watermarks -> Counted", "Sums -> Keep"

    records_in = families["flowactors_records_in"]
    records_out = families["flowactors_records_out"]
    assert {s.name for s in records_in} == {"flowactors_records_in_total"}
    chains = {
        source: ["Numbers", "Timestamps/Watermarks", "Counted"],
        keyed: ["Sums", "Keep"],
    }
    # Records are counted per operator; the chain is the vertex label.
    labelled = {(s.labels["vertex"], s.labels["operator"], s.labels["subtask"]) for s in records_in}
    assert labelled == {
        (vertex, op, subtask) for vertex, ops in chains.items() for op in ops for subtask in "01"
    }
    assert all(s.labels["job"] == "counting" for s in records_in)
    taken, given = per_operator(records_in), per_operator(records_out)
    for subtask in "01":
        read = taken[("Numbers", subtask)]
        assert read > 50
        # a source's records in are what it read; every operator of the chain passes them on
        assert given[("Numbers", subtask)] == read
        assert taken[("Timestamps/Watermarks", subtask)] == read
        assert given[("Timestamps/Watermarks", subtask)] == read
        assert taken[("Counted", subtask)] == given[("Counted", subtask)] == read
        # the sink chained behind the reduce gets every sum; it counts what it wrote
        assert taken[("Keep", subtask)] == given[("Sums", subtask)] == taken[("Sums", subtask)]
    produced = sum(given[("Counted", t)] for t in "01")
    consumed = sum(taken[("Sums", t)] for t in "01")
    assert 0 < consumed <= produced

    backpressure = families["flowactors_backpressure_ratio"]
    assert len(backpressure) == 4 and all(0.0 <= s.value <= 1.0 for s in backpressure)

    now_ms = time.time() * 1000
    watermarks = families["flowactors_watermark_ms"]
    assert {s.labels["vertex"] for s in watermarks} == {source, keyed}
    assert all("operator" not in s.labels for s in watermarks)  # a subtask's, not an operator's
    assert all(now_ms - 10_000 < s.value <= now_ms for s in watermarks)
    lags = families["flowactors_watermark_lag_seconds"]
    assert lags and all(0.0 <= s.value < 10.0 for s in lags)

    entries = families["flowactors_keyed_state_entries"]
    assert {s.labels["vertex"] for s in entries} == {keyed}
    assert sum(s.value for s in entries) == KEYS  # one running sum per key

    assert families["flowactors_job_running"][0].value == 1.0
    assert families["flowactors_job_restarts"][0].name == "flowactors_job_restarts_total"
    assert families["flowactors_job_restarts"][0].value == 0.0
    assert families["flowactors_checkpoints_completed"][0].value >= 2
    assert 0.0 < families["flowactors_last_checkpoint_duration_seconds"][0].value < 10.0
    histogram = {s.name: s for s in families["flowactors_checkpoint_duration_seconds"]}
    completed = families["flowactors_checkpoints_completed"][0].value
    assert histogram["flowactors_checkpoint_duration_seconds_count"].value == completed
    buckets = [
        s for s in families["flowactors_checkpoint_duration_seconds"] if s.name.endswith("_bucket")
    ]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == completed
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    assert 0.0 < histogram["flowactors_checkpoint_duration_seconds_sum"].value < 10.0 * completed
    assert families["flowactors_last_checkpoint_size_bytes"][0].value > 0
    assert 0.0 <= families["flowactors_last_checkpoint_sync_pause_seconds"][0].value < 1.0
    assert 0.0 <= families["flowactors_last_checkpoint_age_seconds"][0].value < 5.0

    seen = families["flowactors_user_records_seen"]
    assert {s.name for s in seen} == {"flowactors_user_records_seen_total"}
    assert {(s.labels["uid"], s.labels["operator"]) for s in seen} == {("counted", "Counted")}
    read = sum(s.value for s in by_vertex(records_in, source) if s.labels["operator"] == "Numbers")
    assert sum(s.value for s in seen) == read  # the chained map sees every record read
    assert {s.labels["uid"] for s in families["flowactors_user_last_key"]} == {"counted"}
    assert "flowactors_user_numKeyedStateEntries" not in families

    # The lag family exists before any source reports into it.
    assert "flowactors_consumer_lag_records" in families
    assert families["flowactors_consumer_lag_records"] == []


async def test_no_label_holds_a_record_key(tmp_path: Path) -> None:
    client = await start_counting_job(tmp_path, parallelism=1, rate=5000)
    registry = CollectorRegistry()
    monitor = monitor_for(client)
    assert isinstance(monitor, JobMonitor)  # a job in one process
    registry.register(JobCollector(monitor))
    try:
        await wait_until(lambda: client.metrics().tasks[0].records_in > 500)
        families = scrape(registry)
    finally:
        await client.cancel()
    allowed = {"job", "vertex", "operator", "subtask", "uid", "topic", "partition", "le"}
    for samples in families.values():
        for s in samples:
            assert set(s.labels) <= allowed, s


class FailOnce:
    """Fails the job at the first record it sees in the first attempt only."""

    failed = False

    def __call__(self, value: tuple[int, int]) -> tuple[int, int]:
        if not FailOnce.failed:
            FailOnce.failed = True
            raise RuntimeError("injected failure")
        return value


async def test_a_restart_is_counted_and_the_monitor_follows_the_new_run(tmp_path: Path) -> None:
    FailOnce.failed = False
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(100, storage=tmp_path / "checkpoints")
    env.set_restart_strategy(RestartStrategies.fixed_delay(3, 200))
    (
        env.from_generator(lambda i: (i % KEYS, 1), rate=1000)
        .map(FailOnce())
        .key_by(lambda t: t[0])
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
        .uid("sums")
        .sink_to(KeepingSink())
    )
    client = await env.execute_async("restarting")
    monitor = JobMonitor(client)
    registry = CollectorRegistry()
    registry.register(JobCollector(monitor))
    monitor.start()
    try:
        await wait_until(lambda: client.attempts == 1 and monitor.is_ready())
        await wait_until(lambda: monitor.snapshot().checkpoints_completed >= 2)
        families = scrape(registry)
    finally:
        await monitor.stop()
        await client.cancel()
    assert families["flowactors_job_restarts"][0].value == 1.0
    assert families["flowactors_job_running"][0].value == 1.0
    assert sum(s.value for s in families["flowactors_records_in"]) > 0  # the new run's counters


async def test_rocksdb_state_is_measured_in_bytes_without_a_scan(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "rocks"))
    build_counting_job(env, rate=None)
    client = await env.execute_async("rocks")
    registry = CollectorRegistry()
    registry.register(JobCollector(JobMonitor(client)))
    try:
        await wait_until(lambda: client.metrics().tasks[0].records_in > 20_000)
        families = scrape(registry)
    finally:
        await client.cancel()
    assert families["flowactors_keyed_state_entries"] == []  # no cheap exact count
    (size,) = families["flowactors_keyed_state_bytes"]
    assert size.labels["subtask"] == "0"
    assert size.value > 0  # the memtable holds the updates of the 10 keys
