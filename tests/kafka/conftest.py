"""A real Apache Kafka broker for the Kafka connector's tests, started by the test session.

The session starts one single-node KRaft broker (with a SASL_PLAINTEXT listener for the SCRAM
tests and an SSL listener, its certificate signed by a throwaway CA, for the TLS tests) through
``scripts/kafka.sh`` in a temporary directory and stops it at the end. Set
``FLOWACTORS_KAFKA_BOOTSTRAP`` (and optionally ``FLOWACTORS_KAFKA_SASL_BOOTSTRAP``,
``FLOWACTORS_KAFKA_TLS_BOOTSTRAP`` with ``FLOWACTORS_KAFKA_TLS_CAFILE``) to use a broker that is
already running instead. If the broker cannot be started the tests fail:
a connector test that silently skips proves nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "scripts" / "kafka.sh"


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    sasl_bootstrap: str | None
    #: The SSL listener and the CA certificate (PEM file) that signed the broker's.
    tls_bootstrap: str | None
    tls_cafile: str | None
    #: The broker's directory when this session started it (None for an external one).
    directory: Path | None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kafka: needs the Kafka broker the session starts")


def kafka_sh(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        [str(KAFKA_SH), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def start_broker(directory: Path, *extra: str) -> Broker:
    """Start a fresh broker in ``directory``; fail the test (not skip) if it does not come up."""
    for _ in range(3):
        try:
            done = kafka_sh("start", "--dir", str(directory), *extra)
        except subprocess.TimeoutExpired as exc:
            kafka_sh("stop", "--dir", str(directory))
            pytest.fail(f"the Kafka broker did not start in time: {exc}", pytrace=False)
        # A port found free can be taken by another process before the broker binds it
        # (another broker starting on this machine): pick ports again.
        if done.returncode == 0 or "Address already in use" not in done.stderr:
            break
    if done.returncode != 0:
        pytest.fail(
            f"could not start the Kafka broker (scripts/kafka.sh start, exit {done.returncode}):"
            f"\n{done.stderr[-4000:]}",
            pytrace=False,
        )
    bootstrap = done.stdout.strip().splitlines()[-1]
    sasl_file = directory / "sasl_bootstrap"
    sasl = sasl_file.read_text().strip() if sasl_file.exists() else None
    tls_file, ca_file = directory / "tls_bootstrap", directory / "tls_ca"
    tls = tls_file.read_text().strip() if tls_file.exists() else None
    ca = ca_file.read_text().strip() if ca_file.exists() else None
    return Broker(bootstrap, sasl, tls, ca, directory)


def stop_broker(broker: Broker) -> None:
    if broker.directory is not None:
        kafka_sh("stop", "--dir", str(broker.directory))


def restart_broker(broker: Broker, down_s: float) -> None:
    """Stop the broker (SIGTERM, as ``kafka.sh stop``), wait ``down_s``, start the same JVM
    command again on the same data (``kafka.sh start`` would format a fresh cluster)."""
    assert broker.directory is not None
    directory = broker.directory
    pid = int((directory / "kafka.pid").read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    done = kafka_sh("stop", "--dir", str(directory))
    assert done.returncode == 0, done.stderr
    time.sleep(down_s)
    # Detached like kafka.sh does it (setsid, pid file written by the shell that becomes java),
    # so that kafka.sh stop can stop it later and it is never this process's zombie.
    subprocess.run(
        [
            "bash",
            "-c",
            'setsid bash -c \'echo $$ >"$0"; exec "$@"\' "$PIDFILE" "$@" '
            '</dev/null >>"$LOGFILE" 2>&1 &',
            "restart",
            *[arg.decode() for arg in cmdline],
        ],
        env={
            **os.environ,
            "PIDFILE": str(directory / "kafka.pid"),
            "LOGFILE": str(directory / "kafka.log"),
        },
        check=True,
    )
    pid_file = directory / "kafka.pid"
    deadline = time.monotonic() + 5
    new_pid = ""
    while not new_pid.isdigit():
        assert time.monotonic() < deadline, "the restarted broker wrote no pid"
        time.sleep(0.05)
        new_pid = pid_file.read_text().strip() if pid_file.exists() else ""
    probe = REPO / "scripts" / "kafka_probe.py"
    subprocess.run(
        [sys.executable, str(probe), "wait", broker.bootstrap, "--timeout", "60", "--pid", new_pid],
        check=True,
        capture_output=True,
    )


def broker_dir() -> Path:
    """A directory of its own for a broker's data, outside pytest's temporary directories
    (pytest deletes old ones when other sessions start, which a running broker must survive).
    """
    return Path(tempfile.mkdtemp(prefix="flowactors-kafka-"))


@pytest.fixture(scope="session")
def kafka() -> Iterator[Broker]:
    external = os.environ.get("FLOWACTORS_KAFKA_BOOTSTRAP")
    if external:
        yield Broker(
            external,
            os.environ.get("FLOWACTORS_KAFKA_SASL_BOOTSTRAP"),
            os.environ.get("FLOWACTORS_KAFKA_TLS_BOOTSTRAP"),
            os.environ.get("FLOWACTORS_KAFKA_TLS_CAFILE"),
            None,
        )
        return
    directory = broker_dir()
    broker = start_broker(directory, "--sasl", "--tls")
    try:
        yield broker
    finally:
        stop_broker(broker)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def bootstrap(kafka: Broker) -> str:
    return kafka.bootstrap
