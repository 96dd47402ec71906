"""The monitoring server on a scaled-out job's replica, against the real broker.

The replica's tasks are its vertices and subtasks (stage, partition); ``/metrics`` adds
the worker's statistics; ``/readyz`` says whether the replica is a working member of the
group. Scrapes are parsed with prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from flowactors_kafka import KafkaSink, KafkaSource
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from flowactors import JobClient, MapFunction, RuntimeContext, StreamExecutionEnvironment
from flowactors.monitoring import MonitoringServer, ScaleOutMonitor, monitor_for
from tests.kafka._kafka import create_topic, produce_json, read_topic, unique
from tests.kafka.scaleout_worker import build
from tests.support.chromium import run_chromium

pytestmark = pytest.mark.kafka

KEYS = 40
RECORDS = 2000


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def scrape(http: aiohttp.ClientSession, server: MonitoringServer) -> dict[str, list[Sample]]:
    status, text = await get(http, server.url + "/metrics")
    assert status == 200
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def scaled_out(env: StreamExecutionEnvironment, bootstrap: str, app: str) -> None:
    env.enable_checkpointing(100)  # the commit interval
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        properties={"repartition.purge.interval.ms": 300, "min.insync.replicas": 1},
    )


async def test_a_replica_shows_its_tasks_and_the_workers_statistics(
    bootstrap: str, tmp_path: Path
) -> None:
    src = await create_topic(bootstrap, unique("mon-in"), 4)
    out = await create_topic(bootstrap, unique("mon-out"), 4)
    values = [{"k": i % KEYS, "v": 1} for i in range(RECORDS)]
    await produce_json(bootstrap, src, values, key=lambda r: r["k"])
    env = StreamExecutionEnvironment(parallelism=4)
    scaled_out(env, bootstrap, unique("mon-app"))
    build(env, bootstrap, src, out)  # in -> pair -> key_by -> sum -> exactly-once sink
    client = await env.execute_async("keyed-sum")
    assert isinstance(monitor_for(client), ScaleOutMonitor)
    server = MonitoringServer(client, port=0, token="secret")
    await server.start()
    tasks = {("in-0", p) for p in range(4)} | {("sum", p) for p in range(4)}
    try:
        async with aiohttp.ClientSession() as http:
            assert (await get(http, server.url + "/healthz"))[0] == 200
            # Not in the group yet: the worker is still creating topics and joining.
            assert (await get(http, server.url + "/readyz")) == (503, "RUNNING\n")

            async def ready() -> bool:
                return (await get(http, server.url + "/readyz"))[0] == 200

            await eventually(ready)
            records = await read_topic(bootstrap, out, expected=RECORDS, timeout=60, settle=0.5)

            async def caught_up() -> bool:
                families = await scrape(http, server)
                lag = families["flowactors_scale_out_task_lag_records"]
                return len(lag) == 8 and not any(s.value for s in lag)

            await eventually(caught_up)
            families = await scrape(http, server)
            status, body = await get(http, server.url + "/api/job")
            assert status == 200
            job = orjson.loads(body)
            assert (await get(http, server.url + "/readyz"))[0] == 200
            page = await run_chromium(server.url + "/", tmp_path / "profile", "--dump-dom")
            async with http.post(
                server.url + "/api/savepoints",
                json={"directory": str(tmp_path / "savepoint")},
                headers={"Authorization": "Bearer secret"},
            ) as response:
                refused = response.status, await response.json()
            await client.stop()  # type: ignore[attr-defined]
            assert (await get(http, server.url + "/readyz"))[0] == 503  # it left the group
    finally:
        await server.stop()
        await client.stop()  # type: ignore[attr-defined]
    assert refused[0] == 409 and "no savepoints" in refused[1]["error"]
    per_key = Counter(i % KEYS for i in range(RECORDS))
    assert Counter(tuple(orjson.loads(r.value)) for r in records) == Counter(
        (k, s) for k, n in per_key.items() for s in range(1, n + 1)
    )

    def labelled(name: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(s.labels[x] for x in labels): s.value for s in families[name]}

    # The worker's statistics.
    assigned = labelled("flowactors_scale_out_task_assigned", "stage", "partition")
    assert assigned == {(stage, str(p)): 1.0 for stage, p in tasks}
    assert labelled("flowactors_scale_out_tasks", "job") == {("keyed-sum",): 8.0}
    (rebalances,) = families["flowactors_scale_out_rebalances"]
    assert rebalances.name == "flowactors_scale_out_rebalances_total" and rebalances.value >= 1
    (commits,) = families["flowactors_scale_out_commits"]
    assert commits.name == "flowactors_scale_out_commits_total" and commits.value >= 8
    assert 0 < families["flowactors_scale_out_last_rebalance_seconds"][0].value < 60
    assert families["flowactors_scale_out_restore_seconds"][0].value >= 0
    # one replica from the start: every task restored once (empty changelogs), none
    # cancelled, none resumed, none restoring now
    assert labelled("flowactors_scale_out_restores", "job") == {("keyed-sum",): 4.0}
    assert labelled("flowactors_scale_out_restores_cancelled", "job") == {("keyed-sum",): 0.0}
    assert labelled("flowactors_scale_out_resumed", "job") == {("keyed-sum",): 0.0}
    assert labelled("flowactors_scale_out_tasks_restoring", "job") == {("keyed-sum",): 0.0}
    (stalls,) = families["flowactors_scale_out_loop_stalls"]
    assert stalls.name == "flowactors_scale_out_loop_stalls_total" and stalls.value == 0
    assert 0 <= families["flowactors_scale_out_longest_loop_stall_seconds"][0].value < 3
    assert set(labelled("flowactors_scale_out_task_lag_records", "stage", "partition")) == set(
        assigned
    )

    # The tasks' own metrics: a stage is the vertex, the partition the subtask.
    records_in = labelled("flowactors_records_in", "vertex", "operator", "subtask")
    records_out = labelled("flowactors_records_out", "vertex", "operator", "subtask")
    assert {(v, t) for v, _, t in records_in} == {(stage, str(p)) for stage, p in tasks}

    def total(counts: dict[tuple[str, ...], float], vertex: str, operator: str) -> float:
        return sum(n for (v, o, _), n in counts.items() if (v, o) == (vertex, operator))

    assert total(records_in, "in-0", "in") == RECORDS  # read from the input topic
    assert total(records_out, "in-0", "pair") == RECORDS
    assert total(records_in, "sum", "Sum") == RECORDS  # every record crossed the hop once
    assert total(records_out, "sum", "Sum") == RECORDS
    assert total(records_out, "sum", "out") == RECORDS  # what the sink wrote
    state = labelled("flowactors_keyed_state_entries", "vertex", "subtask")
    assert set(state) == {("sum", str(p)) for p in range(4)}
    assert sum(state.values()) == KEYS  # one running sum per key, over the sum's tasks
    assert {s.labels["vertex"] for s in families["flowactors_backpressure_ratio"]} == {
        "in-0",
        "sum",
    }
    assert all(s.labels["job"] == "keyed-sum" for f in families.values() for s in f)
    assert not any("checkpoint" in name for name in families)  # commits, not checkpoints

    # /api/job: the replica's tasks, the worker's statistics.
    assert job["status"] == "RUNNING" and job["ready"] is True
    vertices = {v["name"]: v for v in job["vertices"]}
    assert set(vertices) == {"in-0", "sum"}
    for v in vertices.values():
        assert sorted(t["subtask"] for t in v["subtasks"]) == [0, 1, 2, 3]
        assert v["parallelism"] == 4
    assert [(o["name"], o["records_in"]) for o in vertices["in-0"]["operators"]][:2] == [
        ("in", RECORDS),
        ("pair", RECORDS),
    ]
    scale_out = job["scale_out"]
    assert {(t["stage"], t["partition"]) for t in scale_out["assignment"]} == tasks
    assert scale_out["rebalances"] >= 1 and scale_out["commits"] >= 8
    assert {(t["stage"], t["partition"]) for t in scale_out["lag"]} == tasks

    # The web view draws the stages and lists the replica's tasks.
    assert '<span id="error"></span>' in page  # every poll reached the replica
    assert re.findall(r'class="vertex" data-id="\d+" data-name="([^"]+)"', page) == ["in-0", "sum"]
    drawn_tasks = re.findall(r'class="task" data-stage="([^"]+)" data-partition="(\d)"', page)
    assert {(stage, int(p)) for stage, p in drawn_tasks} == tasks
    assert '<section id="scale-out">' in page  # shown: this is a replica
    assert 'data-vertex="in-0" data-operator="pair"' in page


class Keys(MapFunction[dict[str, int], int]):
    """The key of each record; counts them in a user counter, the last in a gauge."""

    def open(self, ctx: RuntimeContext) -> None:
        self.seen = ctx.get_metric_group().counter("keys_seen")
        self.last = 0
        ctx.get_metric_group().gauge("last_key", lambda: float(self.last))

    def map(self, record: dict[str, int]) -> int:
        self.seen.inc()
        self.last = record["k"]
        return self.last


def one_stage_job(env: StreamExecutionEnvironment, bootstrap: str, src: str, out: str) -> None:
    source: KafkaSource[Any] = KafkaSource(
        bootstrap_servers=bootstrap, topics=[src], value_deserializer="json"
    )
    sink: KafkaSink[Any] = KafkaSink(
        bootstrap_servers=bootstrap, topic=out, value_serializer="json"
    )
    env.from_source(source, name="in").map(Keys()).name("key").uid("keys").sink_to(sink)


async def replica(bootstrap: str, app: str, src: str, out: str) -> JobClient:
    env = StreamExecutionEnvironment()
    scaled_out(env, bootstrap, app)
    one_stage_job(env, bootstrap, src, out)
    return await env.execute_async("one-task")


async def test_a_replica_without_tasks_is_ready_and_says_so(bootstrap: str, tmp_path: Path) -> None:
    src = await create_topic(bootstrap, unique("mon-in"), 1)  # one task for two replicas
    out = await create_topic(bootstrap, unique("mon-out"), 1)
    app = unique("mon-app")
    clients = [await replica(bootstrap, app, src, out) for _ in range(2)]
    servers = [MonitoringServer(c, port=0) for c in clients]
    for server in servers:
        await server.start()
    try:
        async with aiohttp.ClientSession() as http:

            async def both_ready_one_task_in_all() -> bool:
                for server in servers:
                    if (await get(http, server.url + "/readyz"))[0] != 200:
                        return False
                owned = [c.assignment() for c in clients]
                return sorted(map(len, owned)) == [0, 1]

            await eventually(both_ready_one_task_in_all)
            idle = next(i for i, c in enumerate(clients) if not c.assignment())
            busy = 1 - idle
            await produce_json(bootstrap, src, [{"k": i} for i in range(100)])
            await read_topic(bootstrap, out, expected=100, timeout=60, settle=0.2)

            async def counted() -> bool:
                records_in = (await scrape(http, servers[busy]))["flowactors_records_in"]
                return sum(s.value for s in records_in if s.labels["operator"] == "in") == 100

            await eventually(counted)
            families = [await scrape(http, server) for server in servers]
            job = orjson.loads((await get(http, servers[idle].url + "/api/job"))[1])
            page = await run_chromium(servers[idle].url + "/", tmp_path / "profile", "--dump-dom")
    finally:
        for server in servers:
            await server.stop()
        for client in clients:
            await client.stop()  # type: ignore[attr-defined]

    standby = families[idle]
    assert standby["flowactors_scale_out_task_assigned"] == []
    assert standby["flowactors_scale_out_tasks"][0].value == 0.0
    assert standby["flowactors_scale_out_rebalances"][0].value >= 1
    assert standby["flowactors_records_in"] == []  # no task, no task metrics
    assert job["ready"] is True and job["vertices"] == []
    assert job["scale_out"]["assignment"] == []
    assert '<span id="error"></span>' in page
    assert "no task runs here" in page and "this replica is standing by" in page

    working = families[busy]
    assigned = {
        (s.labels["stage"], s.labels["partition"]): s.value
        for s in working["flowactors_scale_out_task_assigned"]
    }
    assert assigned == {("in-0", "0"): 1.0}
    records_in = {s.labels["operator"]: s.value for s in working["flowactors_records_in"]}
    records_out = {s.labels["operator"]: s.value for s in working["flowactors_records_out"]}
    assert records_in == {"in": 100, "key": 100, "Sink": 100}
    assert records_out == {"in": 100, "key": 100, "Sink": 100}
    # the task's user metrics, per operator
    (seen,) = working["flowactors_user_keys_seen"]
    assert seen.name == "flowactors_user_keys_seen_total" and seen.value == 100
    assert seen.labels == {
        "job": "one-task",
        "vertex": "in-0",
        "operator": "key",
        "subtask": "0",
        "uid": "keys",
    }
    (last,) = working["flowactors_user_last_key"]
    assert last.value == 99 and last.labels["uid"] == "keys"
    assert "flowactors_user_keys_seen" not in standby
