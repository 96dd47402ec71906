"""The Prometheus families of a running job, read through a registry as a scrape would."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from flowactors.monitoring import JobCollector, JobMonitor
from tests.monitoring._jobs import KEYS, start_counting_job, wait_until


def scrape(registry: CollectorRegistry) -> dict[str, list[Sample]]:
    text = generate_latest(registry).decode()
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def by_operator(samples: list[Sample], operator: str) -> list[Sample]:
    return [s for s in samples if s.labels.get("operator") == operator]


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
    assert {s.name for s in records_in} == {"flowactors_records_in_total"}
    assert {(s.labels["operator"], s.labels["subtask"]) for s in records_in} == {
        (source, "0"),
        (source, "1"),
        (keyed, "0"),
        (keyed, "1"),
    }
    assert all(s.labels["job"] == "counting" for s in records_in)
    produced = sum(s.value for s in by_operator(families["flowactors_records_out"], source))
    consumed = sum(s.value for s in by_operator(records_in, keyed))
    assert produced > 100
    assert 0 < consumed <= produced

    backpressure = families["flowactors_backpressure_ratio"]
    assert len(backpressure) == 4 and all(0.0 <= s.value <= 1.0 for s in backpressure)

    now_ms = time.time() * 1000
    watermarks = families["flowactors_watermark_ms"]
    assert {s.labels["operator"] for s in watermarks} == {source, keyed}
    assert all(now_ms - 10_000 < s.value <= now_ms for s in watermarks)
    lags = families["flowactors_watermark_lag_seconds"]
    assert lags and all(0.0 <= s.value < 10.0 for s in lags)

    entries = families["flowactors_keyed_state_entries"]
    assert {s.labels["operator"] for s in entries} == {keyed}
    assert sum(s.value for s in entries) == KEYS  # one running sum per key

    assert families["flowactors_job_running"][0].value == 1.0
    assert families["flowactors_job_restarts"][0].name == "flowactors_job_restarts_total"
    assert families["flowactors_job_restarts"][0].value == 0.0
    assert families["flowactors_checkpoints_completed"][0].value >= 2
    assert 0.0 < families["flowactors_last_checkpoint_duration_seconds"][0].value < 10.0
    assert families["flowactors_last_checkpoint_size_bytes"][0].value > 0
    assert 0.0 <= families["flowactors_last_checkpoint_sync_pause_seconds"][0].value < 1.0
    assert 0.0 <= families["flowactors_last_checkpoint_age_seconds"][0].value < 5.0

    seen = families["flowactors_user_records_seen"]
    assert {s.name for s in seen} == {"flowactors_user_records_seen_total"}
    assert {s.labels["uid"] for s in seen} == {"counted"}
    assert sum(s.value for s in seen) == produced  # the map sees every record
    assert {s.labels["uid"] for s in families["flowactors_user_last_key"]} == {"counted"}
    assert "flowactors_user_numKeyedStateEntries" not in families

    # The lag family exists before any source reports into it.
    assert "flowactors_consumer_lag_records" in families
    assert families["flowactors_consumer_lag_records"] == []


async def test_no_label_holds_a_record_key(tmp_path: Path) -> None:
    client = await start_counting_job(tmp_path, parallelism=1, rate=5000)
    registry = CollectorRegistry()
    registry.register(JobCollector(JobMonitor(client)))
    try:
        await wait_until(lambda: client.metrics().tasks[0].records_in > 500)
        families = scrape(registry)
    finally:
        await client.cancel()
    allowed = {"job", "operator", "subtask", "uid", "topic", "partition"}
    for samples in families.values():
        for s in samples:
            assert set(s.labels) <= allowed, s
