"""The web view in a real headless Chromium, against a running job."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flowactors import StreamExecutionEnvironment
from flowactors.monitoring import MonitoringServer
from tests.monitoring._jobs import build_counting_job, wait_until
from tests.support.chromium import run_chromium

pytestmark = pytest.mark.slow

#: Set to a path to keep the screenshot there too (``make web-view-screenshot``).
SCREENSHOT_ENV = "FLOWACTORS_SCREENSHOT"


class Vertices(HTMLParser):
    """Collects the drawn vertices: their attributes and the texts inside them."""

    def __init__(self) -> None:
        super().__init__()
        self.vertices: list[dict[str, Any]] = []
        self.edges: list[dict[str, str | None]] = []
        self.checkpoint_rows = 0
        #: ``(vertex, operator) -> [cell texts]`` of the operator table.
        self.operator_rows: dict[tuple[str | None, str | None], list[str]] = {}
        self._row: list[str] | None = None
        self._in_cell = False
        self.body: dict[str, str | None] = {}
        self._current: dict[str, Any] | None = None
        self._depth = 0
        self._text_class: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "tr" and a.get("class") == "checkpoint":
            self.checkpoint_rows += 1
        if tag == "tr" and a.get("class") == "operator":
            self._row = self.operator_rows[(a.get("data-vertex"), a.get("data-operator"))] = []
        if tag == "td" and self._row is not None:
            self._in_cell = True
            self._row.append("")
        if tag == "g" and a.get("class") == "edge":
            self.edges.append(a)
        if tag == "g" and a.get("class") == "vertex":
            self._current = {"attrs": a, "texts": {}}
            self.vertices.append(self._current)
            self._depth = 0
        elif self._current is not None and tag == "g":
            self._depth += 1
        if self._current is not None and tag == "text":
            self._text_class = (a.get("class") or "").split(" ")[-1] or None

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        if tag == "tr":
            self._row = None
        if tag == "text":
            self._text_class = None
        if tag == "g" and self._current is not None:
            if self._depth == 0:
                self._current = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._in_cell:
            self._row[-1] += data
        if self._current is not None and self._text_class:
            self._current["texts"][self._text_class] = data


async def test_the_page_draws_the_running_job(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(200, storage=tmp_path / "checkpoints")
    build_counting_job(env, rate=3000, sink_parallelism=1)
    client = await env.execute_async("web-view")
    server = MonitoringServer(client, port=0)
    await server.start()
    try:
        await wait_until(lambda: len(server.monitor.snapshot().checkpoints) >= 3)
        async with aiohttp.ClientSession() as http, http.get(server.url + "/api/job"):
            pass  # a first sample, so that the page's first poll already shows rates
        await asyncio.sleep(1.2)
        started = time.monotonic()
        dom = await run_chromium(server.url + "/", tmp_path / "profile", "--dump-dom")
        screenshot = tmp_path / "web-view.png"
        await run_chromium(server.url + "/", tmp_path / "profile2", f"--screenshot={screenshot}")
        elapsed = time.monotonic() - started
    finally:
        await server.stop()
        await client.cancel()

    page = Vertices()
    page.feed(dom)
    assert int(page.body.get("data-renders") or 0) >= 1, "the page never rendered the job"
    assert '<span id="error"></span>' in dom  # every poll reached the job
    assert re.search(r'id="status"[^>]*>RUNNING<', dom)
    drawn = {v["attrs"]["data-name"]: v for v in page.vertices}
    assert set(drawn) == {"Numbers -> Timestamps/Watermarks -> Counted", "Sums", "Keep"}
    assert [(e["data-source"], e["data-target"]) for e in page.edges] == [("0", "1"), ("1", "2")]

    source = drawn["Numbers -> Timestamps/Watermarks -> Counted"]["texts"]
    keyed = drawn["Sums"]["texts"]
    # 3000 records/s flow through: both ends show a rate of that order.
    rate_out = re.fullmatch(r"out ([\d,.]+)(k?) rec/s", source["rate-out"])
    rate_in = re.fullmatch(r"in ([\d,.]+)(k?) rec/s", keyed["rate-in"])
    assert rate_out and rate_in, (source, keyed)
    for match in (rate_out, rate_in):
        value = float(match.group(1).replace(",", "")) * (1000 if match.group(2) else 1)
        assert 1000 < value < 6000, (source, keyed, elapsed)
    assert keyed["backpressure"].startswith("backpressure ") and "10 keys" in keyed["backpressure"]
    assert re.fullmatch(r"watermark \d\d:\d\d:\d\d\.\d{3} \(.*behind\)", keyed["watermark"])
    for v in drawn.values():
        assert 0.0 <= float(v["attrs"]["data-backpressure"]) <= 1.0
    assert page.checkpoint_rows >= 3
    assert re.search(r"subtask 1: in [\d,]+, out [\d,]+, backpressure \d+%", dom)  # tooltips
    assert re.search(r"Counted  \(uid counted\): in [\d,]+, out [\d,]+", dom)

    # The operator table: every operator of every chain, with its own counts.
    chain = "Numbers -> Timestamps/Watermarks -> Counted"
    assert list(page.operator_rows) == [
        (chain, "Numbers"),
        (chain, "Timestamps/Watermarks"),
        (chain, "Counted"),
        ("Sums", "Sums"),
        ("Keep", "Keep"),
    ]
    counted = page.operator_rows[(chain, "Counted")]
    assert counted[2] == "counted"  # uid
    records_in, records_out = (int(cell.replace(",", "")) for cell in counted[3:])
    assert records_in == records_out > 0  # a map: one out for every record in
    assert '<section id="scale-out" hidden="">' in dom  # a job in one process

    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    keep = os.environ.get(SCREENSHOT_ENV)
    if keep:
        shutil.copyfile(screenshot, keep)
