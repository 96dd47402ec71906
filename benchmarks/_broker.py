"""The Kafka broker a benchmark runs against: ``FLOWACTORS_KAFKA_BOOTSTRAP`` when it names
one, else a fresh single-node broker started with ``scripts/kafka.sh`` and stopped after."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "scripts" / "kafka.sh"


def start_broker(directory: Path) -> str:
    """Start a broker in ``directory``; its bootstrap address."""
    done = subprocess.run(
        [str(KAFKA_SH), "start", "--dir", str(directory)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"could not start Kafka:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def kafka_broker() -> Iterator[str]:
    """The bootstrap address of the broker to use while the block runs."""
    external = os.environ.get("FLOWACTORS_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="flowactors-bench-kafka-") as tmp:
        directory = Path(tmp) / "broker"
        print("starting a Kafka broker ...", file=sys.stderr, flush=True)
        bootstrap = start_broker(directory)
        try:
            yield bootstrap
        finally:
            subprocess.run(
                [str(KAFKA_SH), "stop", "--dir", str(directory)], capture_output=True, check=False
            )
