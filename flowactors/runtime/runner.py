"""The asyncio task that runs a job (or supervises its runs), as its owners use it.

Both one run of a job (:class:`~flowactors.runtime.executor.JobExecution`) and
the job across restarts (:class:`~flowactors.runtime.jobmaster.JobMaster`) are
an asyncio task underneath; this is the one place that knows how to wait for
one without cancelling it, cancel it and see it end, and hear that it ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from flowactors.errors import JobCancelledError

__all__ = ["Runner"]

R = TypeVar("R")


class Runner(Generic[R]):
    """A job's task: :meth:`wait`, :meth:`cancel`, :meth:`on_done`."""

    def __init__(self, job_name: str, coro: Coroutine[Any, Any, R], name: str) -> None:
        self.job_name = job_name
        self.task: asyncio.Task[R] = asyncio.create_task(coro, name=name)

    async def wait(self) -> R:
        """Its result (or error). Cancelling the waiter does not cancel the job; a
        cancelled job raises :class:`JobCancelledError`."""
        try:
            return await asyncio.shield(self.task)
        except asyncio.CancelledError:
            if self.task.cancelled():
                raise JobCancelledError(f"job {self.job_name!r} was cancelled") from None
            raise

    async def cancel(self) -> None:
        """Cancel it and wait until it has ended (a no-op once it has)."""
        if self.task.done():
            return
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once it has ended, however it ended."""
        self.task.add_done_callback(lambda _: callback())

    @property
    def done(self) -> bool:
        return self.task.done()
