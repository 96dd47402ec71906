"""``flowactors run module:build``: run a job until its input ends or a signal stops it.

The first SIGTERM or SIGINT stops the job gracefully. A replica of a scaled-out job
(``env.enable_scale_out`` in its build) commits every task and leaves the group, so
the other replicas take its tasks over at once. Otherwise, with ``--checkpoint-dir``
it takes a savepoint under ``<dir>/savepoints/`` and stops right after it (the
path is printed on stdout: ``--from-savepoint`` resumes from it exactly where
the job stopped), without, it cancels the job. When no savepoint can be taken
(some bounded sources already finished) it cancels, with a warning: the
newest checkpoint in the directory is where a restart resumes. Either way the exit code is 0
and no traceback is printed. A second signal while stopping cancels at once.
A job that fails exits with 1 and its error on stderr. On a terminal, one
status line shows the records read so far, the rate and the time elapsed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from flowactors import (
    FlowactorsError,
    JobCancelledError,
    JobClient,
    JobFailedError,
    StreamExecutionEnvironment,
)
from flowactors.api.environment import ScaleOutJobClient, run_blocking
from flowactors.monitoring.logs import JsonFormatter, TaskContextFilter

log = logging.getLogger("flowactors.cli")

TOKEN_ENV = "FLOWACTORS_MONITOR_TOKEN"


class UsageError(Exception):
    """The command line names something that cannot work (printed without a traceback)."""


def load_build(target: str) -> Callable[[StreamExecutionEnvironment], Any]:
    """``module:function`` → the function (the current directory is importable)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected module:function, got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from exc
    build = getattr(module, attr, None)
    if not callable(build):
        raise UsageError(f"{module_name!r} has no function {attr!r}")
    return build  # type: ignore[no-any-return]


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--monitor expects HOST:PORT (e.g. 127.0.0.1:8081), got {address!r}")
    return host.strip("[]"), int(port)


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TaskContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    try:
        build = load_build(args.target)
        monitor = parse_address(args.monitor) if args.monitor else None
        return run_blocking(_run(args, build, monitor))
    except (UsageError, FlowactorsError, OSError) as exc:
        print(f"flowactors run: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1


async def _run(
    args: argparse.Namespace,
    build: Callable[[StreamExecutionEnvironment], Any],
    monitor: tuple[str, int] | None,
) -> int:
    # Signals are taken from here on, so that one arriving while the job is being
    # built still stops it cleanly once it runs.
    loop = asyncio.get_running_loop()
    signals = asyncio.Queue[int]()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    try:
        return await _build_and_run(args, build, monitor, signals)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _build_and_run(
    args: argparse.Namespace,
    build: Callable[[StreamExecutionEnvironment], Any],
    monitor: tuple[str, int] | None,
    signals: asyncio.Queue[int],
) -> int:
    env = StreamExecutionEnvironment(parallelism=args.parallelism)
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    if checkpoint_dir is not None:
        env.enable_checkpointing(args.checkpoint_interval, storage=checkpoint_dir)
    result = build(env)
    if asyncio.iscoroutine(result):
        await result
    job_name = args.job_name or args.target.partition(":")[0].rpartition(".")[2]
    client = await env.execute_async(
        job_name,
        savepoint_path=args.from_savepoint,
        allow_non_restored_state=args.allow_non_restored_state,
    )
    server = None
    if monitor is not None:
        from flowactors.monitoring import MonitoringServer

        server = MonitoringServer(
            client, monitor[0], monitor[1], token=os.environ.get(TOKEN_ENV) or None
        )
        try:
            await server.start()
        except OSError:
            await client.cancel()
            raise
        log.info("monitoring job %r on %s", job_name, server.url)
    try:
        return await _supervise(client, checkpoint_dir, signals)
    finally:
        if server is not None:
            await server.stop()


async def _progress(client: JobClient, out: TextIO, interval: float = 1.0) -> None:
    """Rewrite one status line on a terminal: records read, rate, elapsed time."""
    from flowactors.monitoring import monitor_for

    monitor = monitor_for(client)
    started = time.monotonic()
    last_count, last_time = 0, started
    try:
        while True:
            await asyncio.sleep(interval)
            snap = monitor.snapshot()
            sources = {v.id for v in snap.vertices if v.is_source}
            count = sum(s.records_in for s in snap.subtasks if s.vertex in sources)
            now = time.monotonic()
            rate = (count - last_count) / (now - last_time) if count >= last_count else 0.0
            last_count, last_time = count, now
            elapsed = int(now - started)
            out.write(
                f"\r{client.job_name}: {snap.status.value.lower()} · {count:,} records read · "
                f"{rate:,.0f} records/s · {elapsed // 60:02d}:{elapsed % 60:02d} elapsed\033[K"
            )
            out.flush()
    finally:
        out.write("\n")
        out.flush()


async def _supervise(
    client: JobClient, checkpoint_dir: Path | None, signals: asyncio.Queue[int]
) -> int:
    progress = None
    if sys.stderr.isatty():
        progress = asyncio.ensure_future(_progress(client, sys.stderr))
    try:
        return await _supervise_signals(client, checkpoint_dir, signals)
    finally:
        if progress is not None:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)


async def _supervise_signals(
    client: JobClient, checkpoint_dir: Path | None, signals: asyncio.Queue[int]
) -> int:
    finished = asyncio.ensure_future(client.wait())
    stop = asyncio.ensure_future(signals.get())
    try:
        await asyncio.wait([finished, stop], return_when=asyncio.FIRST_COMPLETED)
        if not stop.done():
            return _outcome(finished)
        log.info(
            "received %s: stopping job %r", signal.Signals(stop.result()).name, client.job_name
        )
        if finished.done():
            return _outcome(finished)
        stopping = asyncio.ensure_future(_stop(client, checkpoint_dir))
        again = asyncio.ensure_future(signals.get())
        await asyncio.wait([stopping, again], return_when=asyncio.FIRST_COMPLETED)
        if not stopping.done():
            log.warning("second signal: cancelling job %r", client.job_name)
            stopping.cancel()
            await client.cancel()
            return 0
        again.cancel()
        return stopping.result()
    finally:
        stop.cancel()
        if not finished.done():
            await client.cancel()
        await asyncio.gather(finished, return_exceptions=True)


def _outcome(finished: asyncio.Future[Any]) -> int:
    try:
        result = finished.result()
    except JobCancelledError:
        return 0
    except JobFailedError as exc:
        print(f"flowactors run: {exc}", file=sys.stderr)
        return 1
    log.info("job %r finished in %.0f ms", result.job_name, result.net_runtime_ms)
    return 0


async def _stop(client: JobClient, checkpoint_dir: Path | None) -> int:
    if isinstance(client, ScaleOutJobClient):
        # A replica of a scaled-out job: commit every task and leave the group, so the
        # other replicas take its tasks over at once (its state is in Kafka, not in a
        # savepoint).
        await client.stop()
        log.info("job %r: this replica committed and left the group", client.job_name)
        return 0
    if checkpoint_dir is None:
        await client.cancel()
        log.info("job %r cancelled", client.job_name)
        return 0
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = checkpoint_dir / "savepoints" / f"{client.job_name}-{stamp}"
    try:
        path = await client.stop_with_savepoint(target)
    except FlowactorsError as exc:
        # Stopping was asked for and happens; only the savepoint is missing (a job
        # whose bounded sources partly finished cannot take one). A restart with
        # the same --checkpoint-dir resumes from the newest checkpoint instead.
        log.warning("job %r: no savepoint (%s); cancelling it", client.job_name, exc)
        await client.cancel()
        return 0
    print(f"savepoint: {path}", flush=True)
    log.info("job %r stopped with savepoint %s", client.job_name, path)
    return 0
