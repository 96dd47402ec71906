"""The ``flowactors`` console script, run in subprocesses against real checkpoint directories."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flowactors import StreamExecutionEnvironment, WatermarkStrategy
from flowactors.checkpoint.storage import CheckpointStorage
from flowactors.state import RocksDBStateBackend
from flowactors.windows import TumblingEventTimeWindows
from tests.monitoring._jobs import GatedSource, KeepingSink, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(Path(sys.executable).parent / "flowactors")


def flowactors(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def start_run(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COUNTS_RATE": "3000"}
    return subprocess.Popen(
        [SCRIPT, "run", "examples.counts:build", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=30)
    return process.returncode, stdout, stderr


def complete_checkpoints(storage: Path) -> list[Path]:
    return sorted(CheckpointStorage(storage, "counts").job_dir.glob("chk-*/_metadata"))


def counts_of(savepoint: str) -> dict[str, int]:
    lines = flowactors("state", "read", savepoint, "--uid", "counts", "--state", "value")
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    counts = {}
    for r in records:
        key, (same_key, count) = r["key"], r["value"]
        assert key == same_key
        counts[key] = count
    return counts


def generated(savepoint: str) -> int:
    """Events the generator produced up to the savepoint (from its operator state)."""
    info = json.loads(flowactors("checkpoints", "inspect", savepoint, "--json").stdout)
    (events,) = [op for op in info["operators"] if op["uid"] == "events"]
    total = 0
    for part in events["operator_state"]:
        for entry in part["entries"]:
            next_index, _, step = ast.literal_eval(entry)
            total += (next_index - part["subtask"]) // step
    return total


def test_run_stops_with_a_savepoint_on_sigterm_and_resumes_from_it(tmp_path: Path) -> None:
    storage = tmp_path / "checkpoints"
    args = ["-p", "2", "--checkpoint-dir", str(storage), "--checkpoint-interval", "200"]
    first = start_run(*args, "--monitor", "127.0.0.1:0")
    wait_for(lambda: len(complete_checkpoints(storage)) >= 2 or first.poll() is not None)
    code, stdout, stderr = stop(first)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "monitoring job 'counts' on http://127.0.0.1:" in stderr
    savepoint = stdout.strip().splitlines()[-1].removeprefix("savepoint: ")
    assert Path(savepoint).parent == storage / "savepoints"
    counts = counts_of(savepoint)
    assert set(counts) == {f"key-{k}" for k in range(10)}
    # The savepoint is consistent: the counts add up to what the source produced.
    assert sum(counts.values()) == generated(savepoint) > 0

    second = start_run(*args, "--from-savepoint", savepoint)
    seen = len(complete_checkpoints(storage))
    wait_for(lambda: len(complete_checkpoints(storage)) >= min(seen + 2, 3))
    time.sleep(0.5)
    code, stdout, stderr = stop(second, signal.SIGINT)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    resumed = stdout.strip().splitlines()[-1].removeprefix("savepoint: ")
    assert resumed != savepoint
    more = counts_of(resumed)
    # It went on counting from the savepoint: every count grew, and the counts
    # still add up to everything the source produced over both runs.
    assert all(more[k] > counts[k] for k in counts)
    assert sum(more.values()) == generated(resumed) > generated(savepoint)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_run_without_checkpoints_cancels_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    process = start_run("--monitor", f"127.0.0.1:{port}")
    wait_for(lambda: process.poll() is not None or ready(port))
    assert process.poll() is None
    code, stdout, stderr = stop(process, signal.SIGINT)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "savepoint" not in stdout
    assert "cancelled" in stderr


def test_run_reports_a_bad_target_without_a_traceback() -> None:
    result = flowactors("run", "examples.nope:build", check=False)
    assert result.returncode == 2
    assert "cannot import 'examples.nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowactors", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for command in ("run", "checkpoints", "state"):
        assert command in result.stdout


async def take_known_savepoint(tmp_path: Path, rocksdb: bool = False) -> Path:
    """A savepoint of running sums of 0..99 by ``x % 7`` (and checkpoints beside it)."""
    gate = asyncio.Event()
    gate.set()
    sink = KeepingSink()
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(100, storage=tmp_path / "storage")
    if rocksdb:
        env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "rocksdb"))
    (
        env.from_source(GatedSource(gate, count=100), name="Numbers")
        .uid("numbers")
        .key_by(lambda x: x % 7)
        .reduce(lambda a, b: a + b)
        .uid("sums")
        .sink_to(sink)
    )
    client = await env.execute_async("sums")
    try:
        await wait_until(lambda: len(sink.records) == 200)  # 100 per source subtask
        await wait_until(lambda: client.checkpoint_stats() is not None)
        # and a checkpoint triggered after every record was counted
        after = client.checkpoint_stats().checkpoint_id + 1  # type: ignore[union-attr]
        await wait_until(lambda: client.checkpoint_stats().checkpoint_id > after)  # type: ignore[union-attr]
        return Path(await client.trigger_savepoint(tmp_path / "savepoint"))
    finally:
        await client.cancel()


async def test_state_read_prints_the_keyed_state_of_a_savepoint(tmp_path: Path) -> None:
    savepoint = await take_known_savepoint(tmp_path)
    assert read_sums(savepoint) == [{"key": k, "value": v} for k, v in sorted(KNOWN_SUMS.items())]

    missing = flowactors(
        "state", "read", str(savepoint), "--uid", "sums", "--state", "x", check=False
    )
    assert missing.returncode == 1 and "it has: value" in missing.stderr
    other = flowactors(
        "state", "read", str(savepoint), "--uid", "nope", "--state", "x", check=False
    )
    assert other.returncode == 1 and "numbers" in other.stderr and "sums" in other.stderr


#: The running sums of 0..99 by ``x % 7``, twice (each of two source subtasks reads 0..99).
KNOWN_SUMS = {k: 2 * sum(x for x in range(100) if x % 7 == k) for k in range(7)}


def read_sums(snapshot: Path | str) -> list[Any]:
    result = flowactors("state", "read", str(snapshot), "--uid", "sums", "--state", "value")
    return sorted((json.loads(line) for line in result.stdout.splitlines()), key=lambda r: r["key"])


async def test_state_read_reads_rocksdb_savepoints_and_incremental_checkpoints(
    tmp_path: Path,
) -> None:
    savepoint = await take_known_savepoint(tmp_path, rocksdb=True)
    expected = [{"key": k, "value": v} for k, v in sorted(KNOWN_SUMS.items())]
    assert read_sums(savepoint) == expected  # a savepoint: every file its own copy
    meta = json.loads((savepoint / "_metadata").read_text())
    assert meta["operators"]["sums"]["rocksdb"] and not meta["operators"]["sums"]["keyed"]

    # The newest checkpoint is incremental: its SST files are in the shared directory,
    # uploaded by it or by earlier checkpoints.
    storage = CheckpointStorage(tmp_path / "storage", "sums")
    newest = max(storage.job_dir.glob("chk-*/_metadata")).parent
    parts = json.loads((newest / "_metadata").read_text())["operators"]["sums"]["rocksdb"]
    shared = [f for part in parts for f in part["files"] if f["name"].endswith(".sst")]
    assert shared and all("/shared/" in f"/{f['path']}" for f in shared)
    assert read_sums(newest) == expected

    missing = flowactors(
        "state", "read", str(savepoint), "--uid", "sums", "--state", "x", check=False
    )
    assert missing.returncode == 1 and "it has: value" in missing.stderr

    text = flowactors("checkpoints", "inspect", str(newest)).stdout
    assert "verification: ok" in text
    assert "keyed state in RocksDB" in text and "(max parallelism 128)" in text
    assert "states: value" in text
    info = json.loads(flowactors("checkpoints", "inspect", str(newest), "--json").stdout)
    (sums,) = [op for op in info["operators"] if op["uid"] == "sums"]
    assert sums["key_groups"] == "0-127"  # two subtasks' ranges, together every group
    assert sums["states"] == ["value"]
    assert sums["rocksdb_bytes"] == sum(f["size"] for part in parts for f in part["files"])
    assert sums["rocksdb_shared_bytes"] == sum(f["size"] for f in shared)
    assert [p["subtask"] for p in sums["rocksdb_subtasks"]] == [0, 1]


async def test_checkpoints_list_and_inspect_a_real_storage(tmp_path: Path) -> None:
    savepoint = await take_known_savepoint(tmp_path)
    listing = flowactors("checkpoints", "list", str(tmp_path))
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["JOB", "ID", "KIND", "SIZE", "TIME", "PATH"]
    rows = [
        json.loads(line)
        for line in flowactors("checkpoints", "list", str(tmp_path), "--json").stdout.splitlines()
    ]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"checkpoint", "savepoint"}
    assert all(r["job"] == "sums" and r["size_bytes"] > 0 for r in rows)
    assert {r["path"] for r in rows if r["kind"] == "savepoint"} == {str(savepoint)}
    assert any(str(savepoint) in line and "savepoint" in line for line in lines[1:])

    text = flowactors("checkpoints", "inspect", str(savepoint)).stdout
    assert "savepoint" in text and "verification: ok" in text
    assert "operator 'sums': parallelism 2" in text
    assert "key groups" in text and "(max parallelism 128)" in text
    info = json.loads(flowactors("checkpoints", "inspect", str(savepoint), "--json").stdout)
    ops = {op["uid"]: op for op in info["operators"]}
    assert set(ops) == {"numbers", "sums"}
    assert ops["sums"]["keyed_bytes"] > 0 and ops["sums"]["key_groups"]
    # The source's positions: every reader read its 100 numbers.
    assert [p["entries"] for p in ops["numbers"]["operator_state"]] == [["100"], ["100"]]

    # A damaged file fails the verification, and the command says so.
    damaged = next(savepoint.glob("sums/keyed-*.bin"))
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
    broken = flowactors("checkpoints", "inspect", str(savepoint), check=False)
    assert broken.returncode == 1
    assert "verification: FAILED" in broken.stdout and "checksum" in broken.stdout


def test_run_logs_json_lines_with_the_job(tmp_path: Path) -> None:
    port = free_port()
    process = start_run("--monitor", f"127.0.0.1:{port}", "--log-format", "json")
    wait_for(lambda: process.poll() is not None or ready(port))
    code, _, stderr = stop(process)
    assert code == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines()]
    assert all({"time", "level", "logger", "message", "job"} <= set(r) for r in records)
    assert any(r["job"] == "counts" and "cancelled" in r["message"] for r in records), records


def test_run_shows_progress_on_a_terminal() -> None:
    import pty

    primary, secondary = pty.openpty()
    env = {**os.environ, "COUNTS_RATE": "2000", "COUNTS_EVENTS": "5000"}
    process = subprocess.Popen(
        [SCRIPT, "run", "examples.counts:build", "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
        assert process.wait(timeout=30) == 0
    text = output.decode()
    lines = [line for line in text.split("\r") if "records read" in line]
    assert len(lines) >= 2, text  # 5000 events at 2000/s: a line every second
    assert "counts: running · " in lines[0] and "records/s · 00:0" in lines[0]
    counts = [
        int(re.search(r"([\d,]+) records read", line).group(1).replace(",", "")) for line in lines
    ]  # type: ignore[union-attr]
    assert counts == sorted(counts) and 0 < counts[-1] <= 5000


async def test_state_read_shows_window_contents_with_their_window(tmp_path: Path) -> None:
    gate = asyncio.Event()
    gate.set()
    sink = KeepingSink()
    env = StreamExecutionEnvironment(parallelism=1)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda x, ts: x * 10  # 0..990 ms: all in the first second, which never closes
    )
    (
        env.from_source(GatedSource(gate, count=100), name="Numbers")
        .assign_timestamps_and_watermarks(strategy)
        .key_by(lambda x: x % 3)
        .window(TumblingEventTimeWindows.of(timedelta(seconds=1)))
        .reduce(lambda a, b: a + b)
        .uid("window-sums")
        .sink_to(sink)
    )
    client = await env.execute_async("windows")
    try:
        await wait_until(lambda: client.metrics().tasks[0].records_in >= 100)
        savepoint = await client.trigger_savepoint(tmp_path / "savepoint")
    finally:
        await client.cancel()
    assert sink.records == []
    result = flowactors(
        "state", "read", savepoint, "--uid", "window-sums", "--state", "window-contents"
    )
    got = sorted((json.loads(line) for line in result.stdout.splitlines()), key=lambda r: r["key"])
    assert got == [
        {
            "key": k,
            "namespace": {"start": 0, "end": 1000},
            "value": sum(x for x in range(100) if x % 3 == k),
        }
        for k in range(3)
    ]


def test_sigterm_when_no_savepoint_can_be_taken_still_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    storage = tmp_path / "checkpoints"
    process = subprocess.Popen(
        [
            SCRIPT,
            "run",
            "tests.cli._jobs:partly_bounded",
            "--checkpoint-dir",
            str(storage),
            "--monitor",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: process.poll() is not None or ready(port))
    time.sleep(0.3)  # the three-element source has long finished
    code, stdout, stderr = stop(process)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "savepoint:" not in stdout
    assert "no savepoint" in stderr and "finished tasks" in stderr
    assert not (storage / "savepoints").exists() or not any((storage / "savepoints").iterdir())


def test_savepoint_command_asks_a_running_job_with_its_token(tmp_path: Path) -> None:
    port = free_port()
    storage = tmp_path / "checkpoints"
    env = {**os.environ, "COUNTS_RATE": "2000", "FLOWACTORS_MONITOR_TOKEN": "t0ken"}
    process = subprocess.Popen(
        [
            *(SCRIPT, "run", "examples.counts:build", "--checkpoint-dir", str(storage)),
            *("--monitor", f"127.0.0.1:{port}"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: process.poll() is not None or ready(port))
        address = f"127.0.0.1:{port}"
        refused = subprocess.run(
            [SCRIPT, "savepoint", address, str(tmp_path / "refused")],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != "FLOWACTORS_MONITOR_TOKEN"},
            check=False,
        )
        assert refused.returncode == 1
        assert "401" in refused.stderr and "FLOWACTORS_MONITOR_TOKEN" in refused.stderr
        taken = subprocess.run(
            [SCRIPT, "savepoint", address, str(tmp_path / "taken")],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert taken.returncode == 0, taken.stderr
        assert taken.stdout.strip() == str(tmp_path / "taken")
        assert process.poll() is None  # the job goes on
    finally:
        code, _, stderr = stop(process)
    assert code == 0, stderr
    counts = counts_of(str(tmp_path / "taken"))
    assert sum(counts.values()) == generated(str(tmp_path / "taken")) > 0
    assert not (tmp_path / "refused").exists()
