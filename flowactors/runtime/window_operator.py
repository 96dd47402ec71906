"""The window operator: keyed window contents, triggers, lateness, merging sessions.

Window contents live in keyed state keyed by ``(key, window)``; what an entry
is (running value, accumulator, element list) is the business of the
operator's :class:`~flowactors.runtime.window_contents.WindowContents`
strategy, chosen when the operator is built. Triggers decide when a window
fires; their timers are keyed timers whose namespace is the window. An
event-time window is dropped once the watermark passes ``max_timestamp +
allowed_lateness`` (its cleanup timer); elements for windows already dropped
are late: they go to the late side output, or are counted and dropped.

Merging (session) windows: the windows of a key are kept in a list; a new
element's window merges with every window it overlaps, their contents are
combined into the merged window, the trigger is told ``on_merge`` (where it
merges its own per-window state, ``ctx.merge_partitioned_state``), and then
``clear`` for each window merged away.

Tumbling event-time windows with the default trigger take a fast path that
does not call the trigger per element: the outcome is known (register the
window's end timer once; fire at once if the element is late but allowed).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from itertools import repeat
from typing import Any

from flowactors.runtime.collector import Collector
from flowactors.runtime.context import OperatorContext
from flowactors.runtime.invoke import resolve
from flowactors.runtime.keyed import KeyedOperator
from flowactors.runtime.operators import Timestamps, Values, close_function, open_function
from flowactors.runtime.window_contents import EvictingContents, WindowContents
from flowactors.runtime.window_context import WindowContext
from flowactors.time import MAX_WATERMARK
from flowactors.windows.assigners import TimeWindow, TumblingEventTimeWindows, WindowAssigner
from flowactors.windows.triggers import EventTimeTrigger, Trigger, TriggerResult

_MISSING: Any = object()
#: Windows fired between two checks of the time budget.
_FIRE_CHUNK = 256


class WindowOperator(KeyedOperator):
    """Windows of one keyed stream: ``contents`` says what a window keeps, ``window_fn``
    (a ProcessWindowFunction, or None) what a firing emits."""

    def __init__(
        self,
        key_selector: Callable[[Any], Any],
        assigner: WindowAssigner,
        trigger: Trigger | None,
        contents: WindowContents,
        window_fn: Any,
        allowed_lateness_ms: int,
        late_tag: Any,
        keyed: bool,
    ) -> None:
        super().__init__(key_selector)
        # A copy per subtask: an assigner may keep per-subtask state (a stagger offset).
        self.assigner = copy.copy(assigner)
        self.trigger: Trigger = trigger if trigger is not None else assigner.default_trigger()
        if assigner.merging and not self.trigger.can_merge():
            raise TypeError(
                f"{type(self.trigger).__name__} cannot be used with merging (session) windows"
            )
        self.strategy = contents
        self.evicting = contents if isinstance(contents, EvictingContents) else None
        self.fn = contents.function
        self.window_fn = window_fn
        self.lateness = allowed_lateness_ms
        self.late_tag = late_tag
        self.keyed_output = keyed
        self.window: Any = None
        #: The windows being merged into ``window`` while the trigger's ``on_merge`` runs.
        self.merging: list[Any] = []
        self.late_records_dropped = 0
        self.fast = (
            type(assigner) is TumblingEventTimeWindows
            and type(self.trigger) is EventTimeTrigger
            and contents.incremental
        )

    def setup(self, ctx: OperatorContext) -> None:
        super().setup(ctx)
        self.contents = self.backend.table("window-contents", namespaced=True)
        self.sessions = self.backend.table("window-sessions")
        ctx.metric_group.gauge("numLateRecordsDropped", lambda: self.late_records_dropped)

    async def open(self) -> None:
        self.wctx = WindowContext(self)
        self.collector = Collector()
        self.window_cache: dict[int, TimeWindow] = {}
        with self.attributing_failures():
            for f in (self.fn, self.window_fn):
                await open_function(f, self.ctx)
        self.strategy.open(self.backend)
        process = getattr(self.window_fn, "process", self.window_fn)
        self.process_fn = process
        self.clear_fn = getattr(self.window_fn, "clear", None)

    async def close(self) -> None:
        with self.attributing_failures():
            for f in (self.fn, self.window_fn):
                await close_function(f)
        await super().close()

    # -- lifetimes ---------------------------------------------------------

    def _cleanup_time(self, window: Any) -> int | None:
        if not self.assigner.is_event_time:
            top = window.max_timestamp()
            return None if top == MAX_WATERMARK else top
        top = window.max_timestamp()
        return MAX_WATERMARK if top >= MAX_WATERMARK - self.lateness else top + self.lateness

    def _register_cleanup(self, key: Any, window: Any) -> None:
        at = self._cleanup_time(window)
        if at is None:
            return
        if self.assigner.is_event_time:
            self.timers.register_event_time_timer((key, window), at)
        else:
            self.timers.register_processing_time_timer((key, window), at)

    def _delete_cleanup(self, key: Any, window: Any) -> None:
        at = self._cleanup_time(window)
        if at is None:
            return
        if self.assigner.is_event_time:
            self.timers.delete_event_time_timer((key, window), at)
        else:
            self.timers.delete_processing_time_timer((key, window), at)

    def _is_window_late(self, window: Any) -> bool:
        return (
            self.assigner.is_event_time
            and window.max_timestamp() + self.lateness <= self.timers.current_watermark
        )

    # -- elements ----------------------------------------------------------

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        keys = self.keys_of(values, keys)
        try:
            if self.fast and timestamps is not None and not self.strategy.is_async:
                await self._process_tumbling(values, timestamps, keys)
            else:
                await self._process_general(values, timestamps, keys)
        except Exception as exc:
            raise self.failure(exc) from exc
        await self._emit()

    async def _process_tumbling(
        self, values: Values, timestamps: list[int | None], keys: Values
    ) -> None:
        assigner: TumblingEventTimeWindows = self.assigner  # type: ignore[assignment]
        size, offset = assigner.size, assigner.offset
        cache = self.window_cache
        contents = self.contents
        watermark = self.timers.current_watermark
        lateness = self.lateness
        register = self.timers.event.add_new  # a window's timers are set once, when new
        strategy = self.strategy
        first, fold, value_first = strategy.first, strategy.fold, strategy.value_first
        backend = self.backend
        # No snapshot can start while this batch is processed (the task is inside it), so
        # whether entries must be copied before they are mutated is known for the batch.
        copy_first = strategy.copies_on_snapshot and bool(backend.snapshots_in_flight)
        if None in timestamps:
            raise ValueError("TumblingEventTimeWindows needs event timestamps: the record has none")
        too_late = watermark - lateness  # a window whose max timestamp is <= this is dropped
        for v, ts, k in zip(values, timestamps, keys):
            start = ts - (ts - offset) % size  # type: ignore[operator]
            window = cache.get(start)
            if window is None:
                window = cache[start] = TimeWindow(start, start + size)
                if len(cache) > 4096:
                    cache.clear()
            top = start + size - 1
            if top <= too_late:
                self._late(v, ts)
                continue
            slot = (k, window)
            acc = contents.get(slot, _MISSING)
            if acc is _MISSING:
                contents[slot] = first(v)
                if top > watermark:
                    register(slot, top)  # one tuple serves as state key and timer owner
                if lateness:
                    register(slot, top + lateness)
            elif value_first:
                if copy_first:
                    acc = copy.copy(acc)  # a snapshot may still hold this one
                contents[slot] = fold(v, acc)
            else:
                contents[slot] = fold(acc, v)
            if top <= watermark:  # late, but within the allowed lateness: fire again now
                backend.current_key = k
                self.window = window
                await self._fire(k, window)

    async def _process_general(self, values: Values, timestamps: Timestamps, keys: Values) -> None:
        backend = self.backend
        assigner = self.assigner
        trigger = self.trigger
        ctx = self.wctx
        add = self.strategy.add
        now = self.ctx.processing_time.now()
        for v, ts, k in zip(values, timestamps or repeat(None), keys):
            backend.current_key = k
            windows = assigner.assign_windows(v, ts, now)
            if assigner.merging:
                windows = await self._merge(k, windows[0])
            skipped = True
            for window in windows:
                if self._is_window_late(window):
                    continue
                skipped = False
                self.window = window
                slot = (k, window)
                await add(self.contents, slot, v, ts)
                result = trigger.on_element(v, ts, window, ctx)
                if result.is_fire:
                    await self._fire(k, window)
                if result.is_purge:
                    self.contents.pop(slot, None)
                self._register_cleanup(k, window)
            if skipped:
                self._late(v, ts)

    def _late(self, value: Any, timestamp: int | None) -> None:
        if self.late_tag is not None:
            self.side.add(self.late_tag, value, timestamp)
        else:
            self.late_records_dropped += 1

    async def _merge(self, key: Any, new_window: Any) -> list[Any]:
        existing: list[Any] = self.sessions.get(key, [])
        groups = self.assigner.merge_windows([*existing, new_window])
        target = None
        merged_windows = []
        for merged, members in groups:
            merged_windows.append(merged)
            if new_window in members:
                target = merged
            old = [m for m in members if m != merged and m in existing]
            if not old:
                continue
            combined: Any = _MISSING
            for member in old:
                content = self.contents.pop((key, member), _MISSING)
                if content is not _MISSING:
                    combined = (
                        content
                        if combined is _MISSING
                        else await self.strategy.merge(combined, content)
                    )
            if combined is not _MISSING:
                self.contents[(key, merged)] = combined
            # As in Flink: the trigger merges its state into the new window first,
            # then forgets the windows that were merged away.
            self.window, self.merging = merged, old
            try:
                self.trigger.on_merge(merged, self.wctx)
            finally:
                self.merging = []
            for member in old:
                self.window = member
                self.trigger.clear(member, self.wctx)
                self._delete_cleanup(key, member)
        self.sessions[key] = merged_windows
        if target is not None and self._is_window_late(target):
            self.sessions[key] = [w for w in merged_windows if w != target]
            self.contents.pop((key, target), None)
        return [target]

    # -- timers ------------------------------------------------------------

    async def fire_event_timers(self, watermark: int) -> None:
        if not self.fast:
            await super().fire_event_timers(watermark)
            return
        # Tumbling windows with the default trigger: every timer is a window's end (fire)
        # or its cleanup time; all windows due at one timestamp fire as one batch, with
        # no trigger call, no TriggerResult and no heap operation per window.
        turn = self.ctx.turn
        self.timers.current_watermark = watermark
        for timestamp, owners in self.timers.event.pop_due_buckets(watermark):
            # Taken from the end of the reversed list, chunk by chunk, so that the owners
            # are freed as they fire rather than all at once at the end.
            owners.reverse()
            while owners:
                chunk = owners[-_FIRE_CHUNK:]
                del owners[-_FIRE_CHUNK:]
                chunk.reverse()
                try:
                    await self._fire_tumbling(timestamp, chunk)
                except Exception as exc:
                    raise self.failure(exc) from exc
                del chunk
                if turn.expired():
                    await self._emit()  # what fired so far goes on meanwhile
                    await turn.pause()
        await self._emit()

    async def _fire_tumbling(self, timestamp: int, owners: list[tuple[Any, Any]]) -> None:
        contents = self.contents
        backend = self.backend
        out = self.collector
        window_input = self.strategy.window_input
        process = self.process_fn
        keyed_output = self.keyed_output
        wctx = self.wctx
        clear_fn = self.clear_fn
        isawaitable = inspect.isawaitable
        window: Any = None
        fire = cleanup = False
        for key, w in owners:
            if w is not window:
                window = self.window = w
                top = w.max_timestamp()
                fire = timestamp == top
                cleanup = timestamp == self._cleanup_time(w)
                out.timestamp = top
            content = (
                contents.pop((key, w), _MISSING) if cleanup else contents.get((key, w), _MISSING)
            )
            if fire and content is not _MISSING:
                backend.current_key = key
                elements = window_input(content)
                if process is None:
                    for element in elements:
                        out.collect(element)
                else:
                    r = (
                        process(key, wctx, elements, out)
                        if keyed_output
                        else process(wctx, elements, out)
                    )
                    if r is not None and isawaitable(r):
                        await r
            if cleanup and clear_fn is not None:
                backend.current_key = key
                await resolve(clear_fn(wctx))

    async def on_event_time(self, timestamp: int, namespace: Any) -> None:
        await self._on_timer(timestamp, namespace, event_time=True)

    async def on_processing_time(self, timestamp: int, namespace: Any) -> None:
        await self._on_timer(timestamp, namespace, event_time=False)

    async def _on_timer(self, timestamp: int, window: Any, event_time: bool) -> None:
        key = self.backend.current_key
        self.window = window
        if self.assigner.merging and window not in self.sessions.get(key, ()):
            return  # merged away since the timer was set
        try:
            if self.fast:
                result = (
                    TriggerResult.FIRE
                    if timestamp == window.max_timestamp()
                    else TriggerResult.CONTINUE
                )
            elif event_time:
                result = self.trigger.on_event_time(timestamp, window, self.wctx)
            else:
                result = self.trigger.on_processing_time(timestamp, window, self.wctx)
            if result.is_fire:
                await self._fire(key, window)
            if result.is_purge:
                self.contents.pop((key, window), None)
            if event_time == self.assigner.is_event_time and timestamp == self._cleanup_time(
                window
            ):
                await self._clear_window(key, window)
        except Exception as exc:
            raise self.failure(exc) from exc

    async def _clear_window(self, key: Any, window: Any) -> None:
        self.contents.pop((key, window), None)
        if not self.fast:
            self.trigger.clear(window, self.wctx)
        if self.assigner.merging:
            remaining = [w for w in self.sessions.get(key, []) if w != window]
            if remaining:
                self.sessions[key] = remaining
            else:
                self.sessions.pop(key, None)
        if self.clear_fn is not None:
            await resolve(self.clear_fn(self.wctx))

    async def flush_timer_output(self) -> None:
        await self._emit()

    # -- output ------------------------------------------------------------

    async def _fire(self, key: Any, window: Any) -> None:
        if self.evicting is not None:
            await self._fire_evicting(key, window, self.evicting)
            return
        content = self.contents.get((key, window), _MISSING)
        if content is _MISSING:
            return
        await resolve(self._apply(key, window, self.strategy.window_input(content)))

    async def _fire_evicting(self, key: Any, window: Any, evicting: EvictingContents) -> None:
        slot = (key, window)
        records = evicting.evict_before(self.contents, slot, window, self.wctx)
        if records is None:
            return
        elements = await evicting.summarize([record.value for record in records])
        await resolve(self._apply(key, window, elements))
        evicting.evict_after(self.contents, slot, records, window, self.wctx)

    def _apply(self, key: Any, window: Any, elements: list[Any]) -> Any:
        """Hand a firing window's input to the window function (or straight to the output);
        returns what the function returned (maybe an awaitable)."""
        out = self.collector
        out.timestamp = window.max_timestamp()
        if self.process_fn is None:
            for element in elements:
                out.collect(element)
            return None
        if self.keyed_output:
            return self.process_fn(key, self.wctx, elements, out)
        return self.process_fn(self.wctx, elements, out)

    async def _emit(self) -> None:
        await self.emit_collected(self.collector, self.side)
