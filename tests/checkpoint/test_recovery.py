"""Failure recovery: restore from the last checkpoint, restart strategies, failing checkpoints.

Each failure test injects a deterministic failure (record *k* fails once, or
*n* times) into a job that checkpoints every 20 ms and restarts under a fixed
delay strategy, and compares what the exactly-once file sink committed, and the
final keyed state, with a failure-free run: no record lost, none doubled.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from flowactors import (
    CheckpointError,
    ConnectorError,
    JobFailedError,
    KeyedProcessFunction,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from flowactors.checkpoint.config import RestartStrategies
from flowactors.spi import Sink, SinkWriter, SinkWriterContext
from flowactors.windows import TumblingEventTimeWindows
from tests.checkpoint._support import (
    InjectedFailure,
    Injector,
    as_multiset,
    committed_lines,
    expected_running_sums,
    final_state,
    in_index_order,
    key_of,
    lines_of,
    log_messages,
    make_record,
    running_sum_job,
)

COUNT = 12_000
RATE = 15_000  # records/s over all source subtasks: a run takes ~0.8 s (checkpoints every
# 20 ms then complete well before the injected failures, even on a busy machine)
INTERVAL_MS = 20


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowactors")


def checkpointed_env(
    tmp_path: Path, parallelism: int, restarts: int = 3
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.enable_checkpointing(INTERVAL_MS, storage=tmp_path / "checkpoints", resume="none")
    env.set_restart_strategy(RestartStrategies.fixed_delay(restarts, 10))
    return env


async def failure_free_output(tmp_path: Path, parallelism: int) -> list[str]:
    """The reference: the same job, checkpointed, without a failure (and unthrottled)."""
    out = tmp_path / "reference"
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.enable_checkpointing(INTERVAL_MS, storage=tmp_path / "reference-checkpoints")
    running_sum_job(env, out, COUNT)
    await env.execute("reference")
    lines = committed_lines(out)
    assert as_multiset(lines) == as_multiset(lines_of(expected_running_sums(COUNT, parallelism)))
    return lines


def fail_index(parallelism: int) -> int:
    """A record 60 % into the last source subtask's range (~0.24 s into the run), when
    several checkpoints have completed."""
    return COUNT - (COUNT // parallelism) * 2 // 5


def restores(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in log_messages(caplog) if "restores checkpoint" in m]


# -- a record fails, the job restarts from its last checkpoint --------------------


@pytest.mark.parametrize("position", ["before", "after"], ids=["fail-in-source", "fail-after-sum"])
@pytest.mark.parametrize("parallelism", [1, 2, 4], ids=lambda p: f"p{p}")
async def test_one_failure_loses_and_doubles_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, parallelism: int, position: str
) -> None:
    reference = await failure_free_output(tmp_path, parallelism)
    injector = Injector({fail_index(parallelism): 1})
    out = tmp_path / "out"
    env = checkpointed_env(tmp_path, parallelism)
    running_sum_job(env, out, COUNT, rate=RATE, inject=injector.fn(), position=position)
    client = await env.execute_async("one-failure")
    await client.wait()

    assert injector.failures == 1
    assert client.attempts == 1
    assert len(restores(caplog)) == 1, log_messages(caplog)
    lines = committed_lines(out)
    assert len(lines) == COUNT
    assert as_multiset(lines) == as_multiset(reference)
    assert final_state(lines) == final_state(reference)
    if parallelism == 1:
        # One output subtask: the committed files, in the order they were written,
        # are exactly the failure-free sequence of running sums.
        assert in_index_order(out) == reference


async def test_restore_resumes_from_a_checkpoint_not_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The restart continues from a checkpoint's source position, not from index 0."""
    seen: list[int] = []
    injector = Injector({7_000: 1})
    inject = injector.fn()

    def record_and_inject(r: Any) -> Any:
        seen.append(r[1])
        return inject(r)

    out = tmp_path / "out"
    env = checkpointed_env(tmp_path, 1)
    running_sum_job(env, out, COUNT, rate=RATE, inject=record_and_inject)
    await env.execute("resume-position")

    assert len(restores(caplog)) == 1
    failed_at = seen.index(7_000)
    restarted_at = seen[failed_at + 1]
    assert 0 < restarted_at <= 7_000
    # Records before the restored position were seen once, the rest replayed once.
    assert seen[: failed_at + 1] == list(range(7_001))
    assert seen[failed_at + 1 :] == list(range(restarted_at, COUNT))
    assert in_index_order(out) == lines_of(expected_running_sums(COUNT, 1))


@pytest.mark.parametrize(
    "failures",
    [{9_600: 3}, {4_000: 1, 9_500: 1, 5_500: 1}],
    ids=["same-record-3-times", "three-records-once"],
)
async def test_repeated_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, failures: dict[int, int]
) -> None:
    parallelism = 2
    reference = await failure_free_output(tmp_path, parallelism)
    injector = Injector(failures)
    out = tmp_path / "out"
    env = checkpointed_env(tmp_path, parallelism, restarts=5)
    running_sum_job(env, out, COUNT, rate=RATE, inject=injector.fn(), position="after")
    client = await env.execute_async("repeated")
    await client.wait()

    assert injector.failures == 3
    assert client.attempts == 3
    assert len(restores(caplog)) == 3
    lines = committed_lines(out)
    assert as_multiset(lines) == as_multiset(reference)
    assert final_state(lines) == final_state(reference)


# -- windows and timers survive recovery ------------------------------------------

WINDOW = 500
END = COUNT + 10_000


class WindowContents(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Any, out: Any) -> None:
        items = list(elements)
        out.collect((key, context.window.start, len(items), sum(r[1] for r in items)))


class Ticker(KeyedProcessFunction):
    """A timer at the end of every 500 ms of event time that had records, and one
    registered with the key's first record that fires only at the end of input."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count"))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        if n == 1:
            ctx.timer_service().register_event_time_timer(END)
        ctx.timer_service().register_event_time_timer(ctx.timestamp() // WINDOW * WINDOW + 499)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        key = ctx.get_current_key()
        if timestamp == END:
            out.collect(("end", key, self.count.value()))
        else:
            out.collect(("tick", key, timestamp))


def windows_and_timers_job(
    env: StreamExecutionEnvironment, out: Path, rate: float | None, inject: Any = None
) -> None:
    env.get_config().set_auto_watermark_interval(10)
    p = env.get_parallelism()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda r, ts: r[1]
    )
    stream = (
        env.from_generator(lambda i: make_record(i, COUNT, p), count=COUNT, rate=rate)
        .uid("source")
        .assign_timestamps_and_watermarks(strategy)
        .uid("timestamps")
    )
    if inject is not None:
        stream = stream.map(inject).uid("inject")
    keyed = stream.key_by(key_of)
    keyed.window(TumblingEventTimeWindows.of(WINDOW)).process(WindowContents()).uid(
        "windows"
    ).write_text(str(out / "windows")).uid("windows-sink")
    keyed.process(Ticker()).uid("timers").write_text(str(out / "timers")).uid("timers-sink")


def expected_windows_and_timers(parallelism: int) -> tuple[list[Any], list[Any]]:
    windows: dict[tuple[Any, int], list[int]] = {}
    counts: dict[Any, int] = {}
    for i in range(COUNT):
        key = make_record(i, COUNT, parallelism)[0]
        windows.setdefault((key, i // WINDOW * WINDOW), []).append(i)
        counts[key] = counts.get(key, 0) + 1
    expected_windows = [(k, start, len(ix), sum(ix)) for (k, start), ix in windows.items()]
    ticks = [("tick", k, start + 499) for (k, start) in windows]
    ends = [("end", k, n) for k, n in counts.items()]
    return expected_windows, ticks + ends


@pytest.mark.parametrize("parallelism", [1, 2], ids=lambda p: f"p{p}")
async def test_windows_and_timers_fire_once_after_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, parallelism: int
) -> None:
    reference = tmp_path / "reference"
    env = StreamExecutionEnvironment(parallelism=parallelism)
    windows_and_timers_job(env, reference, rate=None)
    await env.execute("windows-reference")

    injector = Injector({10_250: 1})  # inside the window [10000, 10500) of its key
    out = tmp_path / "out"
    env = checkpointed_env(tmp_path, parallelism)
    windows_and_timers_job(env, out, rate=RATE, inject=injector.fn())
    client = await env.execute_async("windows")
    await client.wait()

    assert injector.failures == 1
    assert client.attempts == 1
    assert len(restores(caplog)) == 1
    expected_windows, expected_timers = expected_windows_and_timers(parallelism)
    for name, expected in [("windows", expected_windows), ("timers", expected_timers)]:
        got = committed_lines(out / name)
        assert as_multiset(got) == as_multiset(committed_lines(reference / name)), name
        assert as_multiset(got) == as_multiset(lines_of(expected)), name


# -- restart strategies ---------------------------------------------------------------


def always_failing_job(env: StreamExecutionEnvironment, injector: Injector, out: Path) -> None:
    env.from_generator(lambda i: (i % 3, i, 1), count=1_000).uid("source").map(
        injector.fn()
    ).key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], b[1], a[2] + b[2])).uid("sum").write_text(
        str(out)
    )


async def run_failing(
    tmp_path: Path, strategy: Any, checkpointing: bool = True, failures: int = 1_000
) -> tuple[Injector, JobFailedError, Any]:
    env = StreamExecutionEnvironment(parallelism=1)
    if checkpointing:
        env.enable_checkpointing(INTERVAL_MS, storage=tmp_path / "checkpoints", resume="none")
    if strategy is not None:
        env.set_restart_strategy(strategy)
    injector = Injector({500: failures})
    always_failing_job(env, injector, tmp_path / "out")
    client = await env.execute_async("failing")
    with pytest.raises(JobFailedError) as info:
        await client.wait()
    return injector, info.value, client


async def test_fixed_delay_gives_up_after_its_attempts(tmp_path: Path) -> None:
    injector, err, client = await run_failing(tmp_path, RestartStrategies.fixed_delay(2, 10))
    assert injector.failures == 3  # the first run and two restarts
    assert client.attempts == 2
    assert err.attempts == 3
    message = str(err)
    assert "gave up after 3 attempts" in message
    assert "fixed delay: at most 2 restarts, 10 ms apart" in message
    assert "InjectedFailure" in message
    assert isinstance(err.cause, InjectedFailure)
    assert isinstance(err.__cause__, InjectedFailure)


async def test_no_restart_fails_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    injector, err, client = await run_failing(tmp_path, RestartStrategies.no_restart())
    assert injector.failures == 1
    assert client.attempts == 0
    assert err.attempts == 1
    assert isinstance(err.cause, InjectedFailure)
    assert not [m for m in log_messages(caplog) if "restarting" in m]


async def test_an_error_no_retry_can_fix_is_not_retried(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    env.enable_checkpointing(INTERVAL_MS, storage=tmp_path / "checkpoints", resume="none")
    env.set_restart_strategy(RestartStrategies.fixed_delay(5, 10))
    calls = 0

    def fail(record: Any) -> Any:
        nonlocal calls
        calls += 1
        raise ConnectorError("the password is wrong: fix sasl.password", retriable=False)

    env.from_collection([1, 2, 3]).map(fail).write_text(str(tmp_path / "out"))
    client = await env.execute_async("fatal")
    with pytest.raises(JobFailedError) as info:
        await client.wait()
    assert calls == 1 and client.attempts == 0 and info.value.attempts == 1
    assert "fix sasl.password" in str(info.value) and "no restart can fix this" in str(info.value)
    assert isinstance(info.value.cause, ConnectorError)


async def test_without_checkpointing_the_default_is_no_restart(tmp_path: Path) -> None:
    injector, err, client = await run_failing(tmp_path, None, checkpointing=False)
    assert injector.failures == 1
    assert client.attempts == 0
    assert isinstance(err.cause, InjectedFailure)


async def test_failure_rate_gives_up_when_too_many_failures_in_the_interval(
    tmp_path: Path,
) -> None:
    strategy = RestartStrategies.failure_rate(2, 60_000, 10)
    injector, err, client = await run_failing(tmp_path, strategy)
    assert injector.failures == 3
    assert client.attempts == 2
    assert err.attempts == 3
    assert "gave up after 3 attempts" in str(err)
    assert "failure rate: at most 2 failures per 60000 ms" in str(err)


async def test_failure_rate_keeps_restarting_when_failures_are_spread_out(
    tmp_path: Path,
) -> None:
    # At most one failure per 50 ms, and every restart waits 120 ms: never too many.
    strategy = RestartStrategies.failure_rate(1, 50, 120)
    env = StreamExecutionEnvironment(parallelism=1)
    env.enable_checkpointing(INTERVAL_MS, storage=tmp_path / "checkpoints", resume="none")
    env.set_restart_strategy(strategy)
    injector = Injector({500: 3})
    always_failing_job(env, injector, tmp_path / "out")
    client = await env.execute_async("spread-out")
    await client.wait()
    assert injector.failures == 3
    assert client.attempts == 3


async def test_exponential_delay_with_a_limit_gives_up(tmp_path: Path) -> None:
    strategy = RestartStrategies.exponential_delay(5, 20, 2.0, attempts=2)
    injector, err, client = await run_failing(tmp_path, strategy)
    assert injector.failures == 3
    assert client.attempts == 2
    assert err.attempts == 3
    assert "exponential delay (5..20 ms, at most 2 restarts)" in str(err)


# -- checkpoints that fail ------------------------------------------------------------


class _FlakySnapshotWriter(SinkWriter[Any]):
    def __init__(self, sink: FlakySnapshotSink) -> None:
        self.sink = sink

    async def write(self, values: list[Any], timestamps: Any) -> None:
        pass

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        self.sink.calls += 1
        if not self.sink.fails(self.sink.calls):
            return []
        if self.sink.how == "raise":
            raise RuntimeError(f"cannot snapshot checkpoint {checkpoint_id}")
        return [threading.Lock()]  # cannot be serialised: the asynchronous part fails


class FlakySnapshotSink(Sink[Any]):
    """A sink whose snapshots fail: ``how="raise"`` raises in ``snapshot_state`` (the
    synchronous part), ``how="unpicklable"`` returns state that cannot be written."""

    max_parallelism = 1

    def __init__(self, how: str, fail_every: int | None = None) -> None:
        self.how = how
        self.fail_every = fail_every
        self.calls = 0

    def fails(self, call: int) -> bool:
        return self.fail_every is None or call % self.fail_every != 0

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _FlakySnapshotWriter(self)


@pytest.mark.parametrize("how", ["unpicklable", "raise"])
async def test_job_fails_after_tolerable_plus_one_failed_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    env.enable_checkpointing(
        INTERVAL_MS, storage=tmp_path / "checkpoints", resume="none", tolerable_failures=2
    )
    env.set_restart_strategy(RestartStrategies.no_restart())
    sink = FlakySnapshotSink(how)
    env.from_generator(lambda i: i, rate=2_000).sink_to(sink)
    with pytest.raises(JobFailedError) as info:
        await env.execute("tolerable")
    assert sink.calls == 3
    assert isinstance(info.value.cause, CheckpointError)
    assert "3 consecutive checkpoints failed (tolerable: 2)" in str(info.value)
    aborted = [m for m in log_messages(caplog) if "aborted" in m]
    assert len(aborted) == 3


async def test_a_successful_checkpoint_resets_the_failure_count(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    env.enable_checkpointing(
        INTERVAL_MS, storage=tmp_path / "checkpoints", resume="none", tolerable_failures=2
    )
    env.set_restart_strategy(RestartStrategies.no_restart())
    sink = FlakySnapshotSink("unpicklable", fail_every=3)  # two fail, the third succeeds
    env.from_generator(lambda i: i, count=1_000, rate=2_000).sink_to(sink)
    await env.execute("resets")
    assert sink.calls >= 6
