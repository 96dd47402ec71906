"""The monitoring endpoints over real HTTP, against running jobs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from flowactors import StreamExecutionEnvironment
from flowactors.checkpoint.storage import CompletedCheckpoint
from flowactors.monitoring import MonitoringServer, aiohttp_routes, asgi_app
from tests.monitoring._jobs import (
    GatedSource,
    KeepingSink,
    start_counting_job,
    wait_until,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def metrics(http: aiohttp.ClientSession, server: MonitoringServer) -> dict[str, Any]:
    status, text = await get(http, server.url + "/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_metrics_are_scraped_over_http(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    client = await start_counting_job(tmp_path, parallelism=2, rate=2000)
    server = MonitoringServer(client, port=0)
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.port != 0
        await wait_until(lambda: client.checkpoint_stats() is not None)
        first = await metrics(http, server)
        started = time.monotonic()
        await asyncio.sleep(0.5)
        second = await metrics(http, server)
        elapsed = time.monotonic() - started
    finally:
        await server.stop()
        await client.cancel()
    for name in (
        "flowactors_records_in",
        "flowactors_records_out",
        "flowactors_backpressure_ratio",
        "flowactors_watermark_ms",
        "flowactors_watermark_lag_seconds",
        "flowactors_keyed_state_entries",
        "flowactors_job_restarts",
        "flowactors_last_checkpoint_duration_seconds",
        "flowactors_last_checkpoint_size_bytes",
        "flowactors_last_checkpoint_sync_pause_seconds",
        "flowactors_last_checkpoint_age_seconds",
        "flowactors_consumer_lag_records",
        "flowactors_user_records_seen",
    ):
        assert name in second, name
    assert second["flowactors_records_in"].type == "counter"

    def total(families: dict[str, Any]) -> float:
        return sum(
            s.value
            for s in families["flowactors_records_in"].samples
            if s.labels["operator"] in ("Numbers", "Sums")
        )

    # The generator runs at 2000 records/s, and each record is counted twice (read by
    # the source, taken in by the keyed reduce): the sum grows at about 4000/s.
    assert total(first) > 0
    assert 0.3 * 4000 * elapsed < total(second) - total(first) < 1.5 * 4000 * elapsed


async def test_readyz_follows_the_sources_and_lag_falls_to_zero(
    http: aiohttp.ClientSession,
) -> None:
    gate = asyncio.Event()
    env = StreamExecutionEnvironment(parallelism=2)
    env.from_source(GatedSource(gate, count=1000), name="Gated").map(lambda x: x + 1).sink_to(
        KeepingSink()
    )
    client = await env.execute_async("gated")
    server = MonitoringServer(client, port=0)
    await server.start()
    try:
        await asyncio.sleep(0.2)  # the tasks run; the readers are still "connecting"
        assert (await get(http, server.url + "/readyz"))[0] == 503
        assert (await get(http, server.url + "/healthz"))[0] == 200
        gate.set()

        async def ready() -> bool:
            return (await get(http, server.url + "/readyz"))[0] == 200

        await wait_until(ready)

        async def caught_up() -> bool:
            lag = (await metrics(http, server))["flowactors_consumer_lag_records"].samples
            return len(lag) == 2 and all(s.value == 0 for s in lag)

        await wait_until(caught_up)
        lag = (await metrics(http, server))["flowactors_consumer_lag_records"].samples
        assert {(s.labels["vertex"], s.labels["topic"], s.labels["partition"]) for s in lag} == {
            ("Gated -> Map -> Sink", "numbers", "0"),
            ("Gated -> Map -> Sink", "numbers", "1"),
        }
        await client.cancel()
        assert (await get(http, server.url + "/readyz"))[0] == 503
    finally:
        await server.stop()
        await client.cancel()


async def test_readyz_is_503_before_the_sources_run_and_after_the_job_ended(
    http: aiohttp.ClientSession,
) -> None:
    env = StreamExecutionEnvironment()
    env.from_generator(lambda i: i, count=300, rate=500).map(lambda x: x * 2).sink_to(KeepingSink())
    client = await env.execute_async("bounded")
    server = MonitoringServer(client, port=0)
    # No task had a turn of the event loop yet: no reader started.
    assert not server.monitor.is_ready()
    await server.start()
    try:

        async def ready() -> bool:
            return await get(http, server.url + "/readyz") == (200, "RUNNING\n")

        await wait_until(ready)
        await client.wait()  # 300 records at 500/s: the job ends
        assert await get(http, server.url + "/readyz") == (503, "FINISHED\n")
        assert (await get(http, server.url + "/healthz"))[0] == 200
    finally:
        await server.stop()


async def test_healthz_answers_while_a_job_runs_at_full_speed(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    client = await start_counting_job(tmp_path, parallelism=2, rate=None)
    server = MonitoringServer(client, port=0)
    await server.start()
    try:
        await wait_until(lambda: sum(t.records_in for t in client.metrics().tasks) > 10_000)
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            status, body = await get(http, server.url + "/healthz")
            latencies.append(time.monotonic() - started)
            assert (status, body) == (200, "ok\n")
        produced = sum(t.records_in for t in client.metrics().tasks)
    finally:
        await server.stop()
        await client.cancel()
    assert max(latencies) < 0.5
    assert produced > 20_000  # the job kept running flat out meanwhile


async def post_savepoint(
    http: aiohttp.ClientSession, url: str, directory: Path, token: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with http.post(
        url + "/api/savepoints", json={"directory": str(directory)}, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_savepoints_over_http_need_a_configured_token(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    client = await start_counting_job(tmp_path, parallelism=1, rate=1000)
    closed = MonitoringServer(client, port=0)
    guarded = MonitoringServer(client, port=0, token="s3cret")
    await closed.start()
    await guarded.start()
    try:
        status, body = await post_savepoint(http, closed.url, tmp_path / "sp0", "s3cret")
        assert status == 403 and "disabled" in body["error"]
        assert (await post_savepoint(http, guarded.url, tmp_path / "sp1", None))[0] == 401
        assert (await post_savepoint(http, guarded.url, tmp_path / "sp1", "wrong"))[0] == 401
        assert not (tmp_path / "sp0").exists() and not (tmp_path / "sp1").exists()
        status, body = await post_savepoint(http, guarded.url, tmp_path / "sp2", "s3cret")
        assert status == 200 and body["path"] == str(tmp_path / "sp2")
    finally:
        await closed.stop()
        await guarded.stop()
        await client.cancel()
    savepoint = CompletedCheckpoint.load(tmp_path / "sp2")
    assert savepoint.metadata["kind"] == "savepoint"
    assert "sums" in savepoint.operators()


def test_binding_needs_an_explicit_address(tmp_path: Path) -> None:
    client: Any = object()
    with pytest.raises(ValueError, match=r"0\.0\.0\.0"):
        MonitoringServer(client, host="")


async def test_api_job_describes_graph_rates_and_checkpoints(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    client = await start_counting_job(tmp_path, parallelism=2, rate=2000)
    async with MonitoringServer(client, port=0) as server:
        try:
            await wait_until(lambda: client.checkpoint_stats() is not None)
            await get(http, server.url + "/api/job")
            await asyncio.sleep(1.1)
            status, text = await get(http, server.url + "/api/job")
        finally:
            await client.cancel()
    assert status == 200
    job = json.loads(text)
    assert job["job"] == "counting" and job["status"] == "RUNNING" and job["ready"]
    names = [v["name"] for v in job["vertices"]]
    assert names == ["Numbers -> Timestamps/Watermarks -> Counted", "Sums -> Keep"]
    assert job["edges"] == [{"source": 0, "target": 1, "partitioning": "hash"}]
    source, keyed = job["vertices"]
    assert [o["uid"] for o in keyed["operators"]] == ["sums", keyed["operators"][1]["uid"]]
    assert source["parallelism"] == 2 and len(source["subtasks"]) == 2
    assert 1000 < source["rate_out"] < 3000  # 2000 records/s
    assert keyed["keyed_state_entries"] == 10
    assert keyed["watermark"] is not None and 0 <= keyed["watermark_lag_ms"] < 10_000
    history = job["checkpoints"]["history"]
    assert history and history[-1]["kind"] == "checkpoint" and history[-1]["size_bytes"] > 0


async def test_routes_mount_into_a_services_own_aiohttp_app(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    client = await start_counting_job(tmp_path, parallelism=1, rate=500)

    async def orders(request: web.Request) -> web.Response:
        return web.json_response({"orders": 3})

    app = web.Application()
    app.add_routes([web.get("/orders", orders), *aiohttp_routes(client)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        assert await get(http, f"http://127.0.0.1:{port}/orders") == (200, '{"orders": 3}')
        status, text = await get(http, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "flowactors_records_in_total{" in text

        async def ready() -> bool:
            return (await get(http, f"http://127.0.0.1:{port}/readyz"))[0] == 200

        await wait_until(ready)
    finally:
        await runner.cleanup()
        await client.cancel()


async def call_asgi(app: Any, method: str, path: str, root_path: str = "") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "headers": [(b"host", b"service")],
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_asgi_app_serves_the_same_endpoints(tmp_path: Path) -> None:
    client = await start_counting_job(tmp_path, parallelism=1, rate=500)
    app = asgi_app(client)
    try:
        await wait_until(lambda: client.metrics().tasks[0].records_in > 0)
        status, body = await call_asgi(app, "GET", "/metrics", root_path="/monitor")
        assert status == 200
        families = {f.name for f in text_string_to_metric_families(body.decode())}
        assert "flowactors_records_in" in families
        assert (await call_asgi(app, "GET", "/healthz"))[0] == 200

        async def ready() -> bool:
            return await call_asgi(app, "GET", "/readyz") == (200, b"RUNNING\n")

        await wait_until(ready)
        assert (await call_asgi(app, "POST", "/api/savepoints"))[0] == 403
        assert (await call_asgi(app, "GET", "/nope"))[0] == 404
    finally:
        await client.cancel()
