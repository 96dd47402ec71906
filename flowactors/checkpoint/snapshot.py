"""What one operator subtask puts into a checkpoint, and how it gets it back.

The synchronous part of a snapshot (:class:`OperatorSnapshot`) holds shallow
copies of the keyed state tables, the live timers, and the operator state
entries. The asynchronous part (:func:`write_operator_snapshot`) groups keyed
entries and timers by key group, serialises each group into its own section
of one file per subtask (the metadata records each section's offset, size and
checksum, so a restore at any parallelism reads just the groups it owns) and
each subtask's operator state into another file, yielding to the event loop
(through the ``pause`` it is given: the task's time budget; by default every few
thousand entries) so processing goes on meanwhile.

Restoring (:class:`RestoreView`) reads the key groups a subtask owns now —
whatever the parallelism was when the snapshot was taken — and hands operator
state entries round-robin to the new subtasks (or all of them to every
subtask, for union state).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowactors.checkpoint.config import Serializer
from flowactors.checkpoint.storage import CompletedCheckpoint
from flowactors.errors import CheckpointError
from flowactors.state.files import FileInfo, checksum, write_file, write_parts
from flowactors.state.keygroups import key_group_for

_YIELD_EVERY = 5000
#: Entries (or key groups) between two calls of a given ``pause``.
_CHECK_EVERY = 256

Pause = Callable[[], Awaitable[None]]


async def _yield() -> None:
    await asyncio.sleep(0)


@dataclass
class KeyedSnapshot:
    #: state name -> shallow copy of its table (key or (key, namespace) -> value)
    tables: dict[str, dict[Any, Any]]
    namespaced: set[str]
    #: (timestamp, (key, namespace)) of live timers
    event_timers: list[tuple[int, Any]]
    processing_timers: list[tuple[int, Any]]
    max_parallelism: int
    #: A backend's own snapshot (RocksDB files), written by its ``write`` method.
    native: Any = None


@dataclass
class OperatorSnapshot:
    keyed: KeyedSnapshot | None = None
    operator_state: list[Any] | None = None


@dataclass
class KeyGroupState:
    """The restored contents of one key group."""

    tables: dict[str, dict[Any, Any]] = field(default_factory=dict)
    namespaced: set[str] = field(default_factory=set)
    event_timers: list[tuple[int, Any]] = field(default_factory=list)
    processing_timers: list[tuple[int, Any]] = field(default_factory=list)


async def write_operator_snapshot(
    directory: Path,
    uid: str,
    subtask: int,
    snapshot: OperatorSnapshot,
    serializer: Serializer,
    shared_dir: Path | None = None,
    pause: Pause | None = None,
) -> dict[str, Any]:
    """Write one subtask's snapshot of one operator; return its metadata part.

    ``shared_dir`` (checkpoints, not savepoints) lets incremental backends
    reference files uploaded by earlier checkpoints.
    """
    meta: dict[str, Any] = {}
    if snapshot.keyed is not None and snapshot.keyed.native is not None:
        meta["rocksdb"] = [await snapshot.keyed.native.write(directory, shared_dir, uid, subtask)]
    if snapshot.keyed is not None:
        groups = await _group_by_key_group(snapshot.keyed, pause)
        sections: list[bytes] = []
        keyed: dict[str, Any] = {}
        path = f"{uid}/keyed-{subtask}.bin"
        offset = 0
        for n, (group, state) in enumerate(sorted(groups.items())):
            data = serializer.dumps(
                {
                    "tables": state.tables,
                    "namespaced": sorted(state.namespaced),
                    "event_timers": state.event_timers,
                    "processing_timers": state.processing_timers,
                }
            )
            keyed[str(group)] = FileInfo(path, len(data), checksum(data), offset).to_json()
            sections.append(data)
            offset += len(data)
            if pause is not None:
                await pause()
            elif n % 16 == 15:
                await asyncio.sleep(0)
        if sections:
            await write_parts(directory, path, sections)
        meta["keyed"] = keyed
        meta["max_parallelism"] = snapshot.keyed.max_parallelism
    if snapshot.operator_state:  # nothing to restore is not written (a stateless sink)
        data = serializer.dumps(snapshot.operator_state)
        info = await write_file(directory, f"{uid}/op-{subtask}.bin", data)
        meta["operator_state"] = [{**info.to_json(), "subtask": subtask}]
    return meta


async def write_subtask_snapshot(
    directory: Path,
    subtask: int,
    snapshots: list[tuple[str, OperatorSnapshot | None]],
    serializer: Serializer,
    shared_dir: Path | None = None,
    pause: Pause | None = None,
) -> dict[str, Any]:
    """Write the snapshots of one subtask's operators (by uid); their metadata parts.

    Operators with nothing to restore are left out of the checkpoint.
    """
    meta: dict[str, Any] = {}
    for uid, snapshot in snapshots:
        if snapshot is not None:
            part = await write_operator_snapshot(
                directory, uid, subtask, snapshot, serializer, shared_dir, pause
            )
            if part:
                meta[uid] = part
    return meta


def merge_subtask_part(
    operators: dict[str, dict[str, Any]], uid: str, part: dict[str, Any], parallelism: int | None
) -> None:
    """Add one subtask's metadata part of operator ``uid`` to a checkpoint's operators."""
    merged = operators.setdefault(uid, {"parallelism": parallelism})
    if "keyed" in part:
        merged.setdefault("keyed", {}).update(part["keyed"])
        merged["max_parallelism"] = part["max_parallelism"]
    if "operator_state" in part:
        merged.setdefault("operator_state", []).extend(part["operator_state"])
    if "rocksdb" in part:
        merged.setdefault("rocksdb", []).extend(part["rocksdb"])
        merged["max_parallelism"] = part["max_parallelism"]


async def _group_by_key_group(
    snapshot: KeyedSnapshot, pause: Pause | None = None
) -> dict[int, KeyGroupState]:
    every = _YIELD_EVERY if pause is None else _CHECK_EVERY
    pause = pause or _yield
    groups: dict[int, KeyGroupState] = {}
    cache: dict[Any, int] = {}
    max_p = snapshot.max_parallelism
    seen = 0

    def group_of(key: Any) -> KeyGroupState:
        g = cache.get(key)
        if g is None:
            g = cache[key] = key_group_for(key, max_p)
        state = groups.get(g)
        if state is None:
            state = groups[g] = KeyGroupState()
        return state

    for name, table in snapshot.tables.items():
        namespaced = name in snapshot.namespaced
        for k, value in table.items():
            state = group_of(k[0] if namespaced else k)
            entries = state.tables.get(name)
            if entries is None:
                entries = state.tables[name] = {}
                if namespaced:
                    state.namespaced.add(name)
            entries[k] = value
            seen += 1
            if seen % every == 0:
                await pause()
    for ts, owner in snapshot.event_timers:
        group_of(owner[0]).event_timers.append((ts, owner))
        seen += 1
        if seen % every == 0:
            await pause()
    for ts, owner in snapshot.processing_timers:
        group_of(owner[0]).processing_timers.append((ts, owner))
    return groups


class RestoreView:
    """One operator subtask's view of the checkpoint it restores from."""

    def __init__(
        self,
        checkpoint: CompletedCheckpoint,
        uid: str,
        subtask: int,
        parallelism: int,
        serializer: Serializer,
    ) -> None:
        self.checkpoint = checkpoint
        self.uid = uid
        self.subtask = subtask
        self.parallelism = parallelism
        self.serializer = serializer
        self.meta = checkpoint.operators().get(uid, {})

    @property
    def has_state(self) -> bool:
        return bool(self.meta)

    def native_parts(self) -> list[dict[str, Any]]:
        """RocksDB files of the old subtasks (each with its key-group range)."""
        parts: list[dict[str, Any]] = self.meta.get("rocksdb", [])
        return parts

    async def key_groups(self, key_groups: range, max_parallelism: int) -> list[KeyGroupState]:
        keyed = self.meta.get("keyed")
        if keyed is None:
            return []
        recorded = self.meta.get("max_parallelism")
        if recorded != max_parallelism:
            raise CheckpointError(
                f"operator {self.uid!r} was snapshotted with max parallelism {recorded}, the job "
                f"now has {max_parallelism}: key groups cannot be mapped (keep max parallelism)"
            )
        out = []
        for g in key_groups:
            info = keyed.get(str(g))
            if info is None:
                continue
            payload = self.serializer.loads(await self.checkpoint.read(FileInfo.from_json(info)))
            out.append(
                KeyGroupState(
                    tables=payload["tables"],
                    namespaced=set(payload["namespaced"]),
                    event_timers=[(ts, tuple(o)) for ts, o in payload["event_timers"]],
                    processing_timers=[(ts, tuple(o)) for ts, o in payload["processing_timers"]],
                )
            )
        return out

    async def _all_entries(self) -> list[Any]:
        entries: list[Any] = []
        for info in sorted(self.meta.get("operator_state", []), key=lambda i: i["subtask"]):
            entries.extend(
                self.serializer.loads(await self.checkpoint.read(FileInfo.from_json(info)))
            )
        return entries

    async def operator_state(self) -> list[Any]:
        """This subtask's share of the operator state entries (round-robin on rescale).

        At unchanged parallelism every subtask gets exactly what it snapshotted.
        """
        old = {int(i["subtask"]) for i in self.meta.get("operator_state", [])}
        if old and max(old) < self.parallelism and len(old) == self.parallelism:
            for info in self.meta.get("operator_state", []):
                if int(info["subtask"]) == self.subtask:
                    loaded: list[Any] = self.serializer.loads(
                        await self.checkpoint.read(FileInfo.from_json(info))
                    )
                    return loaded
            return []
        entries = await self._all_entries()
        return entries[self.subtask :: self.parallelism]

    async def union_operator_state(self) -> list[Any]:
        """Every subtask's entries (each new subtask gets all of them)."""
        return await self._all_entries()
