"""The monitoring endpoints, independent of any web framework.

:class:`Endpoints` answers ``(method, path, headers, body)`` with a
:class:`Response`; the aiohttp routes and the ASGI app are thin adapters over
it, so both serve exactly the same thing.

=========================  =====================================================
``GET /metrics``           Prometheus text format (:mod:`._metrics`)
``GET /healthz``           200 while the event loop answers
``GET /readyz``            200 once the job runs and its sources read (a scaled-out
                           job's replica: once it joined the group and runs the tasks
                           it owns); else 503
``GET /``                  the web view (one static page polling ``/api/job``)
``GET /api/job``           the job as JSON: graph, rates, watermarks, checkpoints
``POST /api/savepoints``   ``{"directory": D}``: take a savepoint into ``D``.
                           Off (403) unless a token is configured; then it needs
                           ``Authorization: Bearer <token>`` (else 401).
=========================  =====================================================
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flowactors.errors import CheckpointError, InvalidGraphError
from flowactors.monitoring._introspect import JobSnapshot, SubtaskView
from flowactors.monitoring._metrics import JobCollector
from flowactors.monitoring._scaleout import Monitor
from flowactors.spi import ScaleOutStatistics
from flowactors.time import MAX_WATERMARK

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"

PATHS = ("/", "/metrics", "/healthz", "/readyz", "/api/job", "/api/savepoints")


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, data: Any) -> Response:
    return Response(status, JSON, json.dumps(data).encode())


def _page() -> bytes:
    return resources.files("flowactors.monitoring").joinpath("static/index.html").read_bytes()


def _operator_totals(operators: int, subtasks: list[SubtaskView]) -> list[tuple[int, int]]:
    """``(records in, records out)`` of each of a vertex's operators, over its subtasks."""
    totals = [(0, 0)] * operators
    for s in subtasks:
        for index, (n_in, n_out) in enumerate(s.operator_records[:operators]):
            t_in, t_out = totals[index]
            totals[index] = (t_in + n_in, t_out + n_out)
    return totals


def _scale_out_json(stats: ScaleOutStatistics) -> dict[str, Any]:
    return {
        "assignment": [{"stage": stage, "partition": p} for stage, p in stats.assignment],
        "rebalances": stats.rebalances,
        "last_rebalance_s": stats.last_rebalance_seconds,
        "restore_s": stats.restore_seconds,
        "commits": stats.commits,
        "restores": stats.restores,
        "restores_cancelled": stats.restores_cancelled,
        "resumed": stats.resumed,
        "restoring": [{"stage": stage, "partition": p} for stage, p in stats.restoring],
        "loop_stalls": stats.loop_stalls,
        "longest_loop_stall_s": stats.longest_loop_stall_seconds,
        "lag": [
            {"stage": stage, "partition": p, "records": records}
            for (stage, p), records in sorted(stats.lag.items())
        ],
    }


def job_json(snap: JobSnapshot) -> dict[str, Any]:
    """What ``GET /api/job`` returns (and the web view draws)."""
    by_vertex: dict[int, list[SubtaskView]] = {v.id: [] for v in snap.vertices}
    for s in snap.subtasks:
        by_vertex[s.vertex].append(s)
    vertices = []
    for v in snap.vertices:
        subtasks = by_vertex[v.id]
        operator_totals = _operator_totals(len(v.operators), subtasks)
        marks = [s.watermark for s in subtasks]
        watermark = None if not marks or None in marks else min(m for m in marks if m is not None)
        rate_in, rate_out = snap.rates.get(v.id, (0.0, 0.0))
        entries = [s.keyed_state_entries for s in subtasks if s.keyed_state_entries is not None]
        vertices.append(
            {
                "id": v.id,
                "name": v.name,
                "operators": [
                    {"name": o.name, "uid": o.uid, "records_in": n_in, "records_out": n_out}
                    for o, (n_in, n_out) in zip(v.operators, operator_totals)
                ],
                "parallelism": v.parallelism,
                "is_source": v.is_source,
                "is_sink": v.is_sink,
                "records_in": sum(s.records_in for s in subtasks),
                "records_out": sum(s.records_out for s in subtasks),
                "rate_in": rate_in,
                "rate_out": rate_out,
                "backpressure": max((s.backpressure_ratio for s in subtasks), default=0.0),
                "watermark": watermark,
                "watermark_lag_ms": (
                    None
                    if watermark is None or watermark >= MAX_WATERMARK
                    else max(0, int(snap.taken_at * 1000) - watermark)
                ),
                "keyed_state_entries": sum(entries) if entries else None,
                "subtasks": [
                    {
                        "subtask": s.subtask,
                        "records_in": s.records_in,
                        "records_out": s.records_out,
                        "backpressure": s.backpressure_ratio,
                        "watermark": s.watermark,
                        "operators": [
                            {"records_in": n_in, "records_out": n_out}
                            for n_in, n_out in s.operator_records
                        ],
                    }
                    for s in subtasks
                ],
            }
        )
    return {
        "job": snap.job,
        "status": snap.status.value,
        "ready": snap.ready,
        "restarts": snap.restarts,
        "taken_at": snap.taken_at,
        "in_flight_records": snap.in_flight_records,
        "vertices": vertices,
        "edges": [
            {"source": e.source, "target": e.target, "partitioning": e.partitioning}
            for e in snap.edges
        ],
        "scale_out": None if snap.scale_out is None else _scale_out_json(snap.scale_out),
        "checkpoints": {
            "completed": snap.checkpoints_completed,
            "last_age_s": snap.last_checkpoint_age_s,
            "history": [
                {
                    "id": c.checkpoint_id,
                    "kind": c.kind,
                    "completed_at": c.completed_at,
                    "duration_ms": c.duration_s * 1000.0,
                    "sync_pause_ms": c.sync_pause_s * 1000.0,
                    "size_bytes": c.size_bytes,
                    "written_bytes": c.written_bytes,
                }
                for c in snap.checkpoints
            ],
        },
    }


class Endpoints:
    """Answers monitoring requests for one job."""

    def __init__(self, monitor: Monitor, token: str | None = None) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string (or None to disable mutations)")
        self.monitor = monitor
        self.token = token
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(JobCollector(monitor))

    def _authorized(self, headers: dict[str, str]) -> Response | None:
        """``None`` when a mutating request may go ahead, else the refusal."""
        if self.token is None:
            return _json(403, {"error": "mutating endpoints are disabled (no token configured)"})
        given = headers.get("authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credential.strip().encode(), self.token.encode()
        ):
            return Response(
                401,
                JSON,
                json.dumps(
                    {"error": "a valid 'Authorization: Bearer <token>' is required"}
                ).encode(),
                {"WWW-Authenticate": 'Bearer realm="flowactors"'},
            )
        return None

    async def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Response:
        """``headers`` with lower-case names."""
        if path == "/api/savepoints":
            if method != "POST":
                return _json(405, {"error": "use POST"})
            return await self._savepoint(headers, body)
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "use GET"})
        if path == "/metrics":
            return Response(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        if path == "/healthz":
            return Response(200, TEXT, b"ok\n")
        if path == "/readyz":
            ready = self.monitor.is_ready()
            status = self.monitor.client.status.value
            return Response(200 if ready else 503, TEXT, f"{status}\n".encode())
        if path == "/api/job":
            return _json(200, job_json(self.monitor.snapshot()))
        if path in ("/", "/index.html"):
            return Response(200, HTML, _page())
        return _json(404, {"error": f"no such endpoint: {path}"})

    async def _savepoint(self, headers: dict[str, str], body: bytes) -> Response:
        refusal = self._authorized(headers)
        if refusal is not None:
            return refusal
        try:
            request = json.loads(body or b"{}")
            directory = request["directory"]
            if not isinstance(directory, str) or not directory:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _json(400, {"error": 'expected a JSON body {"directory": "<path>"}'})
        try:
            path = await self.monitor.client.trigger_savepoint(directory)
        except (CheckpointError, InvalidGraphError) as exc:  # a scaled-out job takes none
            return _json(409, {"error": str(exc)})
        return _json(200, {"path": path})
