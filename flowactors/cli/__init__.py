"""The ``flowactors`` command (also ``python -m flowactors``).

::

    flowactors run module:build [--parallelism N] [--checkpoint-dir D]
                   [--from-savepoint P] [--monitor HOST:PORT]
    flowactors savepoint HOST:PORT DIR
    flowactors checkpoints list DIR
    flowactors checkpoints inspect PATH
    flowactors state read PATH --uid U --state S

``run`` imports ``module``, calls ``build(env)`` on a fresh environment and
runs the job until its input ends or a signal stops it (:mod:`._run`);
``savepoint`` asks a running job's monitoring server for one
(:mod:`._savepoint`). The checkpoint commands only read
(:mod:`._checkpoints`, :mod:`._state`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from flowactors import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowactors", description="Run stream processing jobs and look into their state."
    )
    parser.add_argument("--version", action="version", version=f"flowactors {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a job: build(env) from module:build",
        description="Import MODULE, call build(env) to add the job's sources and sinks, "
        "and run the job. SIGTERM or Ctrl-C stops it: with a savepoint when "
        "--checkpoint-dir is given (its path is printed), else by cancelling it.",
    )
    run.add_argument("target", metavar="module:build", help="e.g. examples.counts:build")
    run.add_argument("--parallelism", "-p", type=int, default=1, metavar="N")
    run.add_argument("--checkpoint-dir", metavar="D", help="checkpoint storage (enables them)")
    run.add_argument(
        "--checkpoint-interval",
        type=int,
        default=10_000,
        metavar="MS",
        help="milliseconds between checkpoints (default 10000)",
    )
    run.add_argument("--from-savepoint", metavar="P", help="start from this savepoint")
    run.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="drop state of savepoint operators the job does not have",
    )
    run.add_argument("--job-name", metavar="NAME", help="default: the module's name")
    run.add_argument(
        "--monitor",
        metavar="HOST:PORT",
        help="serve /metrics, /healthz, /readyz and the web view there; "
        "FLOWACTORS_MONITOR_TOKEN enables POST /api/savepoints",
    )
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one object a line, with job, operator and subtask",
    )

    savepoint = commands.add_parser(
        "savepoint",
        help="take a savepoint of a running job through its monitoring server",
        description="POST /api/savepoints to a job's monitoring server; the bearer token is "
        "read from FLOWACTORS_MONITOR_TOKEN. The job keeps running.",
    )
    savepoint.add_argument("address", metavar="HOST:PORT", help="or a URL")
    savepoint.add_argument("directory", metavar="DIR", help="an empty or new directory")
    savepoint.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS")

    checkpoints = commands.add_parser("checkpoints", help="list or inspect checkpoints")
    cp_commands = checkpoints.add_subparsers(dest="checkpoints_command", required=True)
    listing = cp_commands.add_parser(
        "list", help="complete checkpoints and savepoints under a storage directory"
    )
    listing.add_argument("directory", metavar="DIR")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    inspect = cp_commands.add_parser(
        "inspect", help="operators, sizes, key groups and entries of one checkpoint"
    )
    inspect.add_argument("path", metavar="PATH")
    inspect.add_argument("--json", action="store_true", help="one JSON document")

    state = commands.add_parser("state", help="read the state of a checkpoint or savepoint")
    state_commands = state.add_subparsers(dest="state_command", required=True)
    read = state_commands.add_parser(
        "read",
        help="keyed state as JSON lines: {'key': ..., 'value': ...}",
        description="Print one operator's keyed state, one JSON object per key "
        "(and window namespace). Read-only. Values are decoded with the "
        "checkpoint's serializer (pickle): read only storage you trust.",
    )
    read.add_argument("path", metavar="PATH", help="a checkpoint or savepoint directory")
    read.add_argument("--uid", required=True, help="the operator's uid")
    read.add_argument("--state", required=True, help="the state descriptor's name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # `flowactors state read ... | head`: the reader has enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from flowactors.cli._run import run

        return run(args)
    if args.command == "savepoint":
        from flowactors.cli._savepoint import trigger_savepoint

        return trigger_savepoint(args.address, args.directory, args.timeout)
    if args.command == "checkpoints":
        from flowactors.cli._checkpoints import inspect_checkpoint, list_checkpoints

        if args.checkpoints_command == "list":
            return list_checkpoints(args.directory, as_json=args.json)
        return inspect_checkpoint(args.path, as_json=args.json)
    from flowactors.cli._state import read_state

    return read_state(args.path, args.uid, args.state)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
