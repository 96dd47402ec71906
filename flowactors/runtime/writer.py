"""Record writers: how a chain's output reaches the mailboxes of the next chain.

A :class:`RecordWriter` serves one edge of the physical graph for one sending
subtask. It keeps an output buffer per target channel, picks the channel of
every record with its partitioner, and sends a buffer as one :class:`Batch`
when it holds ``batch_size`` records, before any in-band control element
(watermark, barrier, end-of-input), and when the owning task flushes it (idle,
or the buffer timeout passed). Records of one sender reach one receiver in the
order they were emitted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from flowactors.errors import InvalidKeyError
from flowactors.runtime.elements import END_OF_INPUT, STOP, Batch, Watermark, WatermarkStatus
from flowactors.runtime.failures import OperatorFailure
from flowactors.runtime.mailbox import Mailbox
from flowactors.state.keygroups import KeyRouter, check_keys


class Partitioning(enum.Enum):
    FORWARD = "forward"
    REBALANCE = "rebalance"
    HASH = "hash"
    BROADCAST = "broadcast"
    GLOBAL = "global"


@dataclass(frozen=True)
class PartitionSpec:
    """How records of an edge are spread over the receiving subtasks."""

    kind: Partitioning
    key_selector: Callable[[Any], Any] | None = None
    #: ``reinterpret_as_keyed``: the input is already partitioned by this key outside
    #: flowactors (e.g. by the Kafka producer); scale-out keeps it in the same stage.
    reinterpreted: bool = False


@dataclass(frozen=True)
class Channel:
    """One receiving end: a subtask's mailbox and the channel number we own in it."""

    mailbox: Mailbox
    index: int


class RecordWriter:
    """Buffers and sends one subtask's records over one edge."""

    def __init__(
        self,
        channels: list[Channel],
        spec: PartitionSpec,
        *,
        batch_size: int,
        sender_index: int,
        max_parallelism: int,
        operator_name: str,
    ) -> None:
        n = len(channels)
        self._channels = channels
        self._n = n
        self._kind = spec.kind
        self._key_selector = spec.key_selector
        self._batch_size = batch_size
        self._values: list[list[Any]] = [[] for _ in range(n)]
        self._timestamps: list[list[int | None] | None] = [None] * n
        self._keys: list[list[Any]] | None = (
            [[] for _ in range(n)] if spec.kind is Partitioning.HASH else None
        )
        self._next = sender_index % n  # rebalance: round-robin start, spread per sender
        self._router = KeyRouter(max_parallelism, n) if spec.kind is Partitioning.HASH else None
        self._operator_name = operator_name
        self.records_out = 0
        self.backpressured_seconds = 0.0
        if spec.kind is Partitioning.HASH:
            self.emit = self._emit_hash  # type: ignore[method-assign]
        elif spec.kind is Partitioning.REBALANCE and n > 1:
            self.emit = self._emit_rebalance  # type: ignore[method-assign]
        elif spec.kind is Partitioning.BROADCAST and n > 1:
            self.emit = self._emit_broadcast  # type: ignore[method-assign]

    # -- data --------------------------------------------------------------

    async def emit(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        """Forward/global (one target): append, send when full."""
        self._append(0, values, timestamps)
        if len(self._values[0]) >= self._batch_size:
            await self._send(0)

    async def _emit_rebalance(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        n = self._n
        start = self._next
        for j in range(min(n, len(values))):
            target = (start + j) % n
            self._append(target, values[j::n], None if timestamps is None else timestamps[j::n])
        self._next = (start + len(values)) % n
        await self._send_full()

    async def _emit_broadcast(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        for target in range(self._n):
            self._append(target, values, timestamps)
        await self._send_full()

    async def _emit_hash(
        self,
        values: list[Any],
        timestamps: list[int | None] | None,
        keys: list[Any] | None = None,
    ) -> None:
        selector = self._key_selector
        assert selector is not None and self._router is not None and self._keys is not None
        if keys is None:
            try:
                keys = list(map(selector, values))
            except Exception as exc:
                raise OperatorFailure(self._operator_name, exc) from exc
        router = self._router
        try:
            targets = router.route(keys)
        except (TypeError, InvalidKeyError) as exc:
            try:
                check_keys(keys, selector, self._operator_name)
            except InvalidKeyError as key_error:
                raise OperatorFailure(self._operator_name, key_error) from exc
            raise OperatorFailure(self._operator_name, exc) from exc
        n = self._n
        key_bufs = self._keys
        if n == 1:
            self._append(0, values, timestamps)
            key_bufs[0].extend(keys)
        else:
            # One pass, one append per record and buffer: cheaper than a mask per target.
            value_bufs = self._values
            if timestamps is None:
                for t in range(n):
                    ts_buf = self._timestamps[t]
                    if ts_buf is not None:  # earlier records of this buffer had timestamps
                        ts_buf.extend(repeat(None, targets.count(t)))
                add_value = [b.append for b in value_bufs]
                add_key = [b.append for b in key_bufs]
                for v, k, t in zip(values, keys, targets):
                    add_value[t](v)
                    add_key[t](k)
            else:
                ts_bufs = self._timestamps
                for t in range(n):
                    if ts_bufs[t] is None:
                        ts_bufs[t] = [None] * len(value_bufs[t])
                tb: list[list[int | None]] = ts_bufs  # type: ignore[assignment]
                add_value = [b.append for b in value_bufs]
                add_key = [b.append for b in key_bufs]
                add_ts = [b.append for b in tb]
                for v, k, ts, t in zip(values, keys, timestamps, targets):
                    add_value[t](v)
                    add_key[t](k)
                    add_ts[t](ts)
        await self._send_full()

    def _append(self, target: int, values: list[Any], timestamps: list[int | None] | None) -> None:
        buf = self._values[target]
        ts_buf = self._timestamps[target]
        if timestamps is not None:
            if ts_buf is None:
                ts_buf = self._timestamps[target] = [None] * len(buf)
            ts_buf.extend(timestamps)
        elif ts_buf is not None:
            ts_buf.extend(repeat(None, len(values)))
        buf.extend(values)

    async def _send_full(self) -> None:
        size = self._batch_size
        for target in range(self._n):
            if len(self._values[target]) >= size:
                await self._send(target)

    async def _send(self, target: int) -> None:
        values = self._values[target]
        if not values:
            return
        timestamps = self._timestamps[target]
        keys = self._keys[target] if self._keys is not None else None
        self._values[target] = []
        self._timestamps[target] = None
        if self._keys is not None:
            self._keys[target] = []
        channel = self._channels[target]
        size = self._batch_size
        self.records_out += len(values)
        if len(values) <= size:
            self.backpressured_seconds += await channel.mailbox.put(
                channel.index, Batch(values, timestamps, keys), len(values)
            )
            return
        for lo in range(0, len(values), size):
            chunk = values[lo : lo + size]
            self.backpressured_seconds += await channel.mailbox.put(
                channel.index,
                Batch(
                    chunk,
                    None if timestamps is None else timestamps[lo : lo + size],
                    None if keys is None else keys[lo : lo + size],
                ),
                len(chunk),
            )

    @property
    def num_channels(self) -> int:
        return self._n

    @property
    def buffered_records(self) -> int:
        return sum(map(len, self._values))

    # -- control -----------------------------------------------------------

    async def flush(self) -> None:
        for target in range(self._n):
            if self._values[target]:
                await self._send(target)

    async def broadcast_element(self, element: Any) -> None:
        """Flush, then send an in-band control element to every channel."""
        await self.flush()
        for channel in self._channels:
            self.backpressured_seconds += await channel.mailbox.put(channel.index, element, 0)

    async def emit_watermark(self, timestamp: int) -> None:
        await self.broadcast_element(Watermark(timestamp))

    async def emit_watermark_status(self, idle: bool) -> None:
        await self.broadcast_element(WatermarkStatus(idle))

    async def end_input(self, drain: bool = True) -> None:
        await self.broadcast_element(END_OF_INPUT if drain else STOP)
