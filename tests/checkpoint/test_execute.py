"""How a job run as a service ends, and what running it says.

- ``execute_blocking`` on SIGTERM (a supervisor stopping the service) or Ctrl-C
  ends the job gracefully in a real process: a savepoint when configured, else a
  cancel; exit code 0, no traceback; the next start resumes exactly.
- ``execute_async`` on an environment whose pipeline already ran says so.
- Routine checkpoint completion logs at DEBUG, failures at WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowactors import InvalidGraphError, StreamExecutionEnvironment
from flowactors.checkpoint.storage import CheckpointStorage
from tests.checkpoint import signal_worker
from tests.checkpoint._support import (
    as_multiset,
    committed_lines,
    completed_ids,
    expected_running_sums,
    lines_of,
    running_sum_job,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(signal_worker.__file__).resolve()
COUNT = 12_000
RATE = 4_000  # 3 s of input: the signal comes long before its end


def start(tmp_path: Path, savepoints: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            str(tmp_path / "checkpoints"),
            str(tmp_path / "out"),
            str(COUNT),
            str(RATE),
            savepoints,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def signal_after_a_checkpoint(
    tmp_path: Path, proc: subprocess.Popen[bytes], sig: int
) -> tuple[str, str]:
    deadline = time.monotonic() + 30
    while not completed_ids(tmp_path / "checkpoints", signal_worker.JOB_NAME):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint completed"
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return out.decode(), err.decode()


def test_sigterm_stops_with_a_savepoint_and_the_next_start_resumes_from_it(
    tmp_path: Path,
) -> None:
    savepoints = tmp_path / "savepoints"
    proc = start(tmp_path, str(savepoints))
    out, err = signal_after_a_checkpoint(tmp_path, proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    status, savepoint = out.split()
    assert status == "FINISHED"
    [taken] = savepoints.iterdir()
    assert savepoint == str(taken) and taken.name.startswith("savepoint-")
    storage = CheckpointStorage(tmp_path / "checkpoints", signal_worker.JOB_NAME)
    assert storage.savepoints()[-1][1] == taken

    proc = start(tmp_path, str(savepoints))  # redeployed: runs to the end of its input
    out, err = (text.decode() for text in proc.communicate(timeout=60))
    assert proc.returncode == 0, err
    assert out == "FINISHED None\n"
    assert f"resumes from savepoint {storage.savepoints()[-1][0]} in {taken}" in err
    lines = committed_lines(tmp_path / "out")
    expected = lines_of(expected_running_sums(COUNT, signal_worker.PARALLELISM))
    assert as_multiset(lines) == as_multiset(expected)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_without_a_savepoint_configured_cancels_and_exits_0(
    tmp_path: Path, sig: int
) -> None:
    proc = start(tmp_path, "-")
    out, err = signal_after_a_checkpoint(tmp_path, proc, sig)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert out == "CANCELED None\n"
    assert "job 'signalled': stop requested, cancelling it" in err


async def test_execute_async_on_an_environment_that_already_ran_says_so(
    tmp_path: Path,
) -> None:
    env = StreamExecutionEnvironment()
    env.from_collection([1, 2, 3]).print()
    await env.execute("once")
    with pytest.raises(InvalidGraphError) as info:
        await env.execute_async("twice")
    assert str(info.value) == (
        "this environment already started job 'once', and a pipeline runs once: define "
        "the pipeline again (sources to sinks) to run it again"
    )
    env.from_collection([4]).print()  # defined again: runs
    await env.execute("twice")


async def test_routine_checkpoints_log_at_debug_and_failures_at_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="flowactors")
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(20, storage=tmp_path / "checkpoints", resume="none")
    running_sum_job(env, tmp_path / "out", COUNT, rate=COUNT * 2)
    client = await env.execute_async("quiet")
    while len(completed_ids(tmp_path / "checkpoints", "quiet")) < 2:
        await asyncio.sleep(0.01)
    await client.stop_with_savepoint(tmp_path / "savepoint")

    def completions(kind: str) -> list[str]:
        return [
            r.levelname
            for r in caplog.records
            if r.getMessage().startswith(f"{kind} ")
            and " of job 'quiet' complete:" in r.getMessage()
        ]

    assert len(completions("checkpoint")) >= 2
    assert set(completions("checkpoint")) == {"DEBUG"}
    assert completions("savepoint") == ["INFO"]  # asked for: worth saying

    caplog.clear()
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(
        20, storage=tmp_path / "checkpoints", resume="none", timeout=1, tolerable_failures=100
    )
    running_sum_job(env, tmp_path / "out2", COUNT // 4, rate=COUNT)
    await env.execute("failing")
    aborted = [r for r in caplog.records if "of job 'failing' aborted" in r.getMessage()]
    assert aborted and {r.levelname for r in aborted} == {"WARNING"}
