"""A headless Chromium for the web view tests: the page as the browser left it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

__all__ = ["run_chromium"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium found: `make chromium` installs Debian's package")


async def run_chromium(url: str, profile: Path, *extra: str) -> str:
    """Open ``url`` for 4 s of virtual time; its stdout (the DOM with ``--dump-dom``)."""
    process = await asyncio.create_subprocess_exec(
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=4000",
        "--window-size=1280,760",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout.decode()
