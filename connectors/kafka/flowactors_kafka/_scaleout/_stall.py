"""Noticing a blocked event loop before the group does.

A worker's heartbeats to the group coordinator are coroutines on the same event loop
as the job and the service that embeds it. A user function that blocks the loop (a
``time.sleep``, a synchronous HTTP call, a long computation) stops them: past the
group's session timeout the coordinator removes the worker, gives its tasks to the
others, and the worker's next commit is fenced. The job stays correct — that is what
fencing is for — but the worker seems to drop its tasks for no reason.

:class:`LoopStallWatch` ticks every ``interval_s`` and measures how late the loop
brought it back. A stall of half the session timeout or more is reported with a
warning that names the cause and the fix; a stall past the session timeout says that
the membership was lost. Stalls are counted for the worker's statistics.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("flowactors_kafka.scaleout")

__all__ = ["LoopStallWatch"]


class LoopStallWatch:
    """Counts and reports event-loop stalls that endanger the group membership."""

    def __init__(self, session_timeout_s: float, interval_s: float = 0.25) -> None:
        self.session_timeout_s = session_timeout_s
        self.interval_s = interval_s
        #: Stalls of half the session timeout or more, and the longest stall seen.
        self.stalls = 0
        self.longest_stall_s = 0.0

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.observe(time.monotonic() - before - self.interval_s)

    def observe(self, stall_s: float) -> None:
        """Account for the loop coming back ``stall_s`` seconds late."""
        self.longest_stall_s = max(self.longest_stall_s, stall_s)
        if stall_s < self.session_timeout_s / 2:
            return
        self.stalls += 1
        if stall_s >= self.session_timeout_s:
            consequence = (
                "longer than the group's session timeout (%.1f s): this worker missed its "
                "heartbeats, the group gave its tasks to other workers, and its open "
                "transactions will be fenced"
            )
        else:
            consequence = (
                "more than half the group's session timeout (%.1f s): a little longer and "
                "this worker loses its tasks"
            )
        log.warning(
            "the event loop was blocked for %.1f s, " + consequence + ". Something in the "
            "process (a user function, the embedding service) ran without awaiting: move "
            "blocking work off the loop (asyncio.to_thread, an executor, or map_async)",
            stall_s,
            self.session_timeout_s,
        )
