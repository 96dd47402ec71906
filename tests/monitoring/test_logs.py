"""Log records of a running job carry job, operator and subtask; the JSON formatter shows them."""

from __future__ import annotations

import json
import logging
from typing import Any

from flowactors import MapFunction, RuntimeContext, StreamExecutionEnvironment
from flowactors.monitoring.logs import JsonFormatter, TaskContextFilter
from tests.monitoring._jobs import KeepingSink

user_log = logging.getLogger("tests.monitoring.user")


class LogsFirst(MapFunction[int, int]):
    def open(self, ctx: RuntimeContext) -> None:
        self.logged = False

    def map(self, value: int) -> int:
        if not self.logged:
            user_log.warning("first record %d", value)
            self.logged = True
        return value


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


async def test_records_logged_in_a_job_say_where_they_come_from() -> None:
    handler = Capture()
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(JsonFormatter())
    user_log.addHandler(handler)
    try:
        env = StreamExecutionEnvironment(parallelism=2)
        env.from_collection(range(100)).rebalance().map(LogsFirst()).name("Logs").sink_to(
            KeepingSink(), name="Keep"
        )
        await env.execute("logging-job")
        user_log.warning("outside", extra={"request": "r-1"})
    finally:
        user_log.removeHandler(handler)

    inside = [r for r in handler.records if r.getMessage().startswith("first record")]
    assert len(inside) == 2
    assert {(r.job, r.operator) for r in inside} == {("logging-job", "Logs -> Keep")}  # type: ignore[attr-defined]
    assert sorted(r.subtask for r in inside) == [0, 1]  # type: ignore[attr-defined]

    lines = [json.loads(line) for line in handler.lines]
    first: dict[str, Any] = next(x for x in lines if x["message"].startswith("first record"))
    assert first["job"] == "logging-job" and first["operator"] == "Logs -> Keep"
    assert first["level"] == "WARNING" and first["logger"] == "tests.monitoring.user"
    assert first["time"].endswith("Z")
    outside = lines[-1]
    assert outside["message"] == "outside"
    assert (outside["job"], outside["operator"], outside["subtask"]) == (None, None, None)
    assert outside["request"] == "r-1"  # other extra fields are kept


def test_explicit_extra_fields_win_and_exceptions_are_included() -> None:
    handler = Capture()
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(JsonFormatter())
    user_log.addHandler(handler)
    try:
        try:
            raise ValueError("bad record")
        except ValueError:
            user_log.exception("failed", extra={"job": "given", "subtask": 7})
    finally:
        user_log.removeHandler(handler)
    line = json.loads(handler.lines[0])
    assert (line["job"], line["operator"], line["subtask"]) == ("given", None, 7)
    assert "ValueError: bad record" in line["exception"]
