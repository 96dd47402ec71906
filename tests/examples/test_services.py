"""The service recipes (examples/service_aiohttp.py, examples/service_asgi.py), run as a
user would: start the service, ask it for live counts while its job runs, stop it with
SIGTERM, check it left nothing running and a savepoint behind, start it again and see
the restored counts before any new event."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["examples.service_aiohttp", "examples.service_asgi"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    def __init__(self, module: str, state: Path, rate: int) -> None:
        self.port = free_port()
        env = {**os.environ, "SERVICE_STATE": str(state), "SERVICE_RATE": str(rate)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("the service did not come up")

    def stop(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGTERM)
        stdout, stderr = self.process.communicate(timeout=60)
        return self.process.returncode, stdout, stderr


def until(condition: Any) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met")


@pytest.mark.parametrize("module", SERVICES)
def test_start_serve_stop_and_resume(module: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    service = Service(module, state, rate=2000)
    try:
        service.wait_ready()
        first = until(lambda: service.get("/counts/key-3")[1])
        assert first["key"] == "key-3" and first["count"] > 0
        later = until(
            lambda: (r := service.get("/counts/key-3")[1]) and r["count"] > first["count"] and r
        )
        assert service.get("/counts/nope") == (404, None)
    finally:
        code, stdout, stderr = service.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "flowactors tasks left: 0" in stdout
    savepoint = Path(
        next(line for line in stdout.splitlines() if line.startswith("savepoint: "))[11:]
    )
    assert (savepoint / "_metadata").is_file()

    # Started again, with events too slow to change anything soon: the restored counts
    # answer at once.
    again = Service(module, state, rate=1)
    try:
        again.wait_ready()
        status, restored = again.get("/counts/key-3")
        assert status == 200 and restored["count"] >= later["count"]
    finally:
        code, stdout, stderr = again.stop()
    assert code == 0, stderr
    assert "flowactors tasks left: 0" in stdout
