"""A worker process for test_execute: a service run with ``execute_blocking``.

``python signal_worker.py STORAGE OUT COUNT RATE SAVEPOINTS`` runs the running-sum
job with checkpoints in STORAGE until its input ends or a signal stops it, with
``savepoint_on_stop=SAVEPOINTS`` unless that is ``-``. It prints the result's
status and savepoint; log lines go to stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from flowactors import StreamExecutionEnvironment
from tests.checkpoint._support import running_sum_job

JOB_NAME = "signalled"
PARALLELISM = 2


def main(argv: list[str]) -> int:
    storage, out, count, rate, savepoints = argv
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    env.enable_checkpointing(50, storage=storage)
    running_sum_job(env, Path(out), int(count), rate=float(rate))
    stop: dict[str, Any] = {} if savepoints == "-" else {"savepoint_on_stop": savepoints}
    result = env.execute_blocking(JOB_NAME, **stop)
    print(f"{result.status.value} {result.savepoint}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
