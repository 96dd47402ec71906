"""The asyncio tasks flowactors started: every test must leave none running."""

from __future__ import annotations

import asyncio

__all__ = ["flowactors_tasks"]


def flowactors_tasks() -> list[asyncio.Task[object]]:
    """Tasks the runtime started that are still alive in the running loop."""
    return [
        t for t in asyncio.all_tasks() if t.get_name().startswith("flowactors:") and not t.done()
    ]
