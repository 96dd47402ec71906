"""The suite's own guard: a test that leaves a flowactors task running fails."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

LEAKY = """
import asyncio
from flowactors import StreamExecutionEnvironment

async def test_leaves_a_job_running():
    env = StreamExecutionEnvironment()
    env.from_generator(lambda i: i, rate=100).filter(lambda i: False).print()
    await env.execute_async("left running")
    await asyncio.sleep(0.01)

async def test_ends_its_job():
    env = StreamExecutionEnvironment()
    env.from_generator(lambda i: i, rate=100).filter(lambda i: False).print()
    client = await env.execute_async("cancelled")
    await asyncio.sleep(0.01)
    await client.cancel()
"""


def test_a_leaked_job_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import _no_leaked_tasks  # noqa: F401\n")
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*the test left 4 flowactors task(s) running: flowactors:left running*"]
    )
