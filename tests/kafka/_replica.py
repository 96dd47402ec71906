"""The loop of a worker process in the scale-out tests: run until SIGTERM, then stop as
planned (commit, leave the group); print ``assigned <tasks>`` whenever the tasks this
replica owns change, and ``stopped`` after a planned stop (the tests read both)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any


async def run_replica(client: Any) -> int:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    waiter = asyncio.ensure_future(client.wait())
    stopper = asyncio.ensure_future(stopping.wait())
    last: list[tuple[str, int]] = []
    while not waiter.done():
        await asyncio.wait({waiter, stopper}, timeout=0.2)
        now = client.assignment()
        if now != last:
            print("assigned", now, flush=True)
            last = now
        if stopper.done():
            await client.stop()
            print("stopped", flush=True)
            return 0
    stopper.cancel()
    waiter.result()
    return 0
