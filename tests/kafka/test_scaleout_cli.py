"""``flowactors run`` of a scaled-out job: SIGTERM is a planned stop of the replica."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.kafka._kafka import create_topic, read_topic, unique
from tests.kafka._scaleout import REPO, check_output, produce_keyed

pytestmark = pytest.mark.kafka


def start_run(bootstrap: str, app: str, src: str, out: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowactors",
            "run",
            "tests.kafka.scaleout_worker:build_from_environment",
            "-p",
            "4",
            "--log-level",
            "INFO",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "SCALEOUT_BOOTSTRAP": bootstrap,
            "SCALEOUT_APP": app,
            "SCALEOUT_IN": src,
            "SCALEOUT_OUT": out,
        },
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return process.returncode, stderr


async def test_sigterm_commits_and_leaves_the_group_and_a_new_run_continues(
    bootstrap: str,
) -> None:
    src = await create_topic(bootstrap, unique("cli-in"), 4)
    out = await create_topic(bootstrap, unique("cli-out"), 4)
    app = unique("cli-app")
    await produce_keyed(bootstrap, src, 0, 400)
    first = start_run(bootstrap, app, src, out)
    try:
        await read_topic(bootstrap, out, expected=400, timeout=60, settle=0.5)
    finally:
        code, stderr = await asyncio.to_thread(stop, first)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "this replica committed and left the group" in stderr
    # It left: no member stays behind holding its tasks until the session timeout.
    assert await group_members(bootstrap, app) == []
    # A new run goes on from what the stop committed: every output exactly once.
    await produce_keyed(bootstrap, src, 400, 400)
    second = start_run(bootstrap, app, src, out)
    try:
        records = await read_topic(bootstrap, out, expected=800, timeout=60, settle=1.0)
    finally:
        code, stderr = await asyncio.to_thread(stop, second)
    assert code == 0, stderr
    check_output(records, 800)


async def group_members(bootstrap: str, group: str) -> list[Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (described,) = response.groups  # error_code, group, state, ..., members (5th)
        return list(described[5])
    finally:
        await admin.close()
