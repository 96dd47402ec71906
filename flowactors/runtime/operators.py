"""Stream operators: the units a chain is made of, and where their output goes.

An operator takes whole batches (``process_batch(values, timestamps, keys)``)
and pushes its results to its :class:`Output`, which calls the next chained
operator directly (no queue hop) and/or hands them to record writers. The
built-in operators live beside this module: ``stateless`` (map, filter,
flat_map, process), ``keyed``, ``two_input``, ``window_operator``,
``source_sink``, ``async_io``.

A user function that raises makes its operator raise :class:`OperatorFailure`
naming the operator, so the job error says where it broke.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from flowactors.runtime.collector import Collector, SideOutputs
from flowactors.runtime.context import OperatorContext, RuntimeContext
from flowactors.runtime.failures import OperatorFailure
from flowactors.runtime.invoke import resolve

if TYPE_CHECKING:
    from flowactors.checkpoint.snapshot import OperatorSnapshot, RestoreView

Values = list[Any]
Timestamps = list[int | None] | None


def is_async_callable(fn: Any) -> bool:
    """True for ``async def`` functions, methods, partials and async ``__call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the bound method itself
    return call is not None and inspect.iscoroutinefunction(call)


def user_method(fn: Any, name: str) -> Callable[..., Any]:
    """The method ``name`` of a function object (``MapFunction.map``) or ``fn`` itself."""
    method = getattr(fn, name, None)
    if method is not None and callable(method) and not inspect.isfunction(fn):
        return method  # type: ignore[no-any-return]
    if not callable(fn):
        raise TypeError(f"expected a callable or an object with a {name!r} method, got {fn!r}")
    return fn  # type: ignore[no-any-return]


class ChannelWriter(Protocol):
    """What sends an operator's output to other tasks (the runtime's ``RecordWriter``)."""

    async def emit(self, values: Values, timestamps: Timestamps) -> None: ...

    async def emit_watermark(self, timestamp: int) -> None: ...

    async def emit_watermark_status(self, idle: bool) -> None: ...


class Output:
    """Where an operator's records go: chained operators first, then writers.

    It counts the records that pass (``records``, one addition per batch): the
    operator's records out, and the records in of the chained operators it feeds.
    """

    def __init__(self) -> None:
        self.operators: list[StreamOperator] = []
        self.writers: list[ChannelWriter] = []
        #: Records emitted through this output so far.
        self.records = 0
        self.emit: Callable[[Values, Timestamps], Awaitable[None]] = self._emit_none

    def seal(self) -> None:
        """Pick the cheapest ``emit`` for the targets this output ended up with."""
        targets: list[Callable[[Values, Timestamps], Awaitable[None]]] = [
            *(op.process_batch for op in self.operators),
            *(w.emit for w in self.writers),
        ]
        if not targets:
            self.emit = self._emit_none
        elif len(targets) == 1:
            self._target = targets[0]
            self.emit = self._emit_one
        else:
            self._targets = targets
            self.emit = self._emit_all

    @property
    def connected(self) -> bool:
        return bool(self.operators or self.writers)

    async def _emit_none(self, values: Values, timestamps: Timestamps) -> None:
        self.records += len(values)

    def _emit_one(self, values: Values, timestamps: Timestamps) -> Awaitable[None]:
        # A plain function handing back the target's coroutine: counting adds no frame.
        self.records += len(values)
        return self._target(values, timestamps)

    async def _emit_all(self, values: Values, timestamps: Timestamps) -> None:
        self.records += len(values)
        for target in self._targets:
            await target(values, timestamps)

    async def emit_watermark(self, timestamp: int) -> None:
        for op in self.operators:
            await op.process_watermark(timestamp)
        for writer in self.writers:
            await writer.emit_watermark(timestamp)

    async def emit_watermark_status(self, idle: bool) -> None:
        for op in self.operators:
            await op.process_watermark_status(idle)
        for writer in self.writers:
            await writer.emit_watermark_status(idle)


class StreamOperator:
    """Base of all operators. One instance per subtask; driven by one task."""

    #: ``True`` for operators whose head position needs the keys a hash edge carries.
    keyed = False

    def __init__(self) -> None:
        self.output = Output()
        self.side_outputs: dict[Any, Output] = {}
        self.ctx: OperatorContext
        self.current_watermark: int = -(2**63)

    @property
    def name(self) -> str:
        return self.ctx.operator_name

    def setup(self, ctx: OperatorContext) -> None:
        self.ctx = ctx

    def side_output(self, tag: Any) -> Output:
        out = self.side_outputs.get(tag)
        if out is None:
            out = self.side_outputs[tag] = Output()
        return out

    def failure(self, cause: BaseException) -> OperatorFailure:
        return OperatorFailure(self.ctx.operator_name, cause)

    @contextmanager
    def attributing_failures(self) -> Iterator[None]:
        """An error raised inside is this operator's (one raised further down the chain
        is already attributed to its own operator)."""
        try:
            yield
        except OperatorFailure:
            raise
        except Exception as exc:
            raise self.failure(exc) from exc

    async def open(self) -> None:
        """Called once before the first record (tail of the chain first)."""

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        raise NotImplementedError

    async def process_watermark(self, timestamp: int) -> None:
        """Event time advanced to ``timestamp``: fire what it enables, then pass it on."""
        self.current_watermark = timestamp
        await self.output.emit_watermark(timestamp)
        for out in self.side_outputs.values():
            await out.emit_watermark(timestamp)

    async def process_watermark_status(self, idle: bool) -> None:
        await self.output.emit_watermark_status(idle)

    async def emit_collected(self, collector: Collector, side: SideOutputs) -> None:
        """Emit what user code collected (main output, then side outputs)."""
        result, result_ts = collector.take()
        if result:
            await self.output.emit(result, result_ts)
        await side.flush(self.side_outputs)

    # -- checkpoints (the defaults suit stateless operators) -----------------

    async def initialize_state(self, restore: RestoreView) -> None:
        """Take back this subtask's state from a checkpoint (before ``open``)."""

    async def prepare_snapshot_pre_barrier(self, checkpoint_id: int) -> None:
        """Before the barrier passes: flush what must be part of the snapshot."""

    def snapshot_state(self, checkpoint_id: int) -> OperatorSnapshot | None:
        """The synchronous part of a snapshot: cheap copies, no I/O."""
        return None

    async def capture_snapshot(self, checkpoint_id: int) -> OperatorSnapshot | None:
        """What the task calls at a barrier: :meth:`snapshot_state`, or the same taken in
        slices of the task's time budget (the task is suspended while it yields, so the
        state stays as the barrier found it)."""
        return self.snapshot_state(checkpoint_id)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete (commit external side effects now)."""

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` will never complete."""

    def snapshot_finished(self, checkpoint_id: int) -> None:
        """The asynchronous part of this subtask's snapshot is written (or failed)."""

    async def on_control(self, message: Any) -> None:
        """A control-lane message addressed to this operator (timer, async result...)."""
        raise NotImplementedError(
            f"{type(self).__name__} got unexpected control message {message!r}"
        )

    async def finish(self) -> None:
        """All input has been processed: emit whatever is still pending."""

    async def close(self) -> None:
        """Release resources; called once, also after a failure or cancellation."""


class UserFunctionOperator(StreamOperator):
    """An operator that runs one user function object (with ``open``/``close``)."""

    method_name = "__call__"

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn
        self.call = user_method(fn, self.method_name)
        self.is_async = is_async_callable(self.call)

    async def open(self) -> None:
        with self.attributing_failures():
            await open_function(self.fn, self.ctx)

    async def close(self) -> None:
        with self.attributing_failures():
            await close_function(self.fn)


async def open_function(fn: Any, ctx: OperatorContext) -> None:
    """``fn.open(runtime_context)`` of a function object (plain functions have none)."""
    opener = getattr(fn, "open", None)
    if opener is not None and callable(opener) and not inspect.isfunction(fn):
        await resolve(opener(RuntimeContext(ctx)))


async def close_function(fn: Any) -> None:
    """``fn.close()`` of a function object."""
    closer = getattr(fn, "close", None)
    if closer is not None and callable(closer) and not inspect.isfunction(fn):
        await resolve(closer())
