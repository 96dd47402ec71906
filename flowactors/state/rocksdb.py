"""Keyed state on disk in an embedded RocksDB (through ``rocksdict``), with incremental snapshots.

For state larger than memory. Every state is a key range of one RocksDB
instance per operator subtask::

    key   = key group (2 bytes, big-endian) | state name | 0x00 | canonical key bytes
    value = pickle((key, value))

so a key group is one contiguous range (rescaling copies ranges) and a key's
bytes are the same in every process. Memory is bounded by the budget given to
:class:`RocksDBStateBackend` (write buffers and block cache); the rest lives in
SST files on local disk.

Snapshots are RocksDB checkpoints: the synchronous part flushes the memtable
and hard-links the live files into a temporary directory (no data is copied);
the asynchronous part uploads to checkpoint storage only the SST files that
no earlier checkpoint uploaded (SST files never change), into a ``shared/``
directory addressed by checksum, so a checkpoint after few changes is small.
Savepoints copy every file and stay self-contained.

Working directories: each subtask's database lives in its own directory under
``local_dir``, which holds ``owner.lock`` locked (``flock``) for as long as the
backend is open. A process that is killed leaves its directories behind but its
locks go with it, so a backend that starts reclaims every directory whose lock
it can take: its owner is gone. Directories without a lock file (an older
version's) are left alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from flowactors.errors import StateError

try:
    import fcntl
except ImportError:  # not POSIX: working directories of killed runs are not reclaimed
    fcntl = None  # type: ignore[assignment]
from flowactors.state.backend import StateRegistry
from flowactors.state.descriptors import StateDescriptor
from flowactors.state.files import FileInfo, checksum, write_durably
from flowactors.state.keygroups import key_bytes, key_group_for

_MISSING: Any = object()

log = logging.getLogger("flowactors.state")


class RocksDBStateBackend:
    """Choose on-disk keyed state: ``env.set_state_backend(RocksDBStateBackend(...))``.

    ``memory_budget_mb`` bounds RocksDB's memory per operator subtask (write
    buffers plus block cache); ``local_dir`` is where the working databases
    live (a temporary directory by default, removed when the job ends).
    """

    def __init__(self, local_dir: str | os.PathLike[str] | None = None, memory_budget_mb: int = 64):
        if memory_budget_mb < 4:
            raise ValueError("memory_budget_mb must be >= 4")
        self.local_dir = None if local_dir is None else Path(local_dir)
        self.memory_budget_mb = memory_budget_mb

    def create(
        self, key_groups: range, max_parallelism: int, clock: Callable[[], int], owner: str
    ) -> RocksDBKeyedStateBackend:
        return RocksDBKeyedStateBackend(
            key_groups, max_parallelism, clock, owner, self.local_dir, self.memory_budget_mb
        )


def _options(memory_budget_mb: int) -> Any:
    from rocksdict import BlockBasedOptions, Cache, Options

    budget = memory_budget_mb << 20
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(budget // 4)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(budget // 2))
    table.set_cache_index_and_filter_blocks(True)
    options.set_block_based_table_factory(table)
    return options


class RocksTable(MutableMapping[Any, Any]):
    """One state's key range, with the ``dict`` interface the handles use."""

    def __init__(self, backend: RocksDBKeyedStateBackend, name: str, namespaced: bool) -> None:
        if "\x00" in name:
            raise StateError(f"state name {name!r} contains a NUL character")
        self.backend = backend
        self.tag = name.encode() + b"\x00"
        self.namespaced = namespaced
        #: Keys written or deleted since the changelog last took them (when tracked).
        self.changed: set[Any] | None = set() if backend.track_changes else None

    def _raw(self, key: Any) -> bytes:
        backend = self.backend
        owner = key[0] if self.namespaced else key
        group = backend.key_group(owner)
        return group.to_bytes(2, "big") + self.tag + key_bytes(key)

    def __getitem__(self, key: Any) -> Any:
        raw = self.backend.db.get(self._raw(key))
        if raw is None:
            raise KeyError(key)
        return pickle.loads(raw)[1]

    def get(self, key: Any, default: Any = None) -> Any:
        raw = self.backend.db.get(self._raw(key))
        return default if raw is None else pickle.loads(raw)[1]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.backend.db.put(self._raw(key), pickle.dumps((key, value), protocol=5))
        if self.changed is not None:
            self.changed.add(key)

    def __delitem__(self, key: Any) -> None:
        raw = self._raw(key)
        if self.backend.db.get(raw) is None:
            raise KeyError(key)
        self.backend.db.delete(raw)
        if self.changed is not None:
            self.changed.add(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        raw_key = self._raw(key)
        raw = self.backend.db.get(raw_key)
        if raw is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self.backend.db.delete(raw_key)
        if self.changed is not None:
            self.changed.add(key)
        return pickle.loads(raw)[1]

    def __contains__(self, key: object) -> bool:
        return self.backend.db.get(self._raw(key)) is not None

    def _entries(self) -> Iterator[tuple[Any, Any]]:
        db = self.backend.db
        for group in self.backend.key_groups:
            prefix = group.to_bytes(2, "big") + self.tag
            it = db.iter()
            it.seek(prefix)
            while it.valid():
                k = it.key()
                if not k.startswith(prefix):
                    break
                yield pickle.loads(it.value())
                it.next()

    def items(self) -> Any:
        return list(self._entries())

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self._entries()])

    def __len__(self) -> int:
        return sum(1 for _ in self._entries())

    def __bool__(self) -> bool:
        return next(self._entries(), None) is not None


class RocksDBKeyedStateBackend(StateRegistry):
    """All keyed state of one operator subtask, in one RocksDB instance."""

    def __init__(
        self,
        key_groups: range,
        max_parallelism: int,
        clock: Callable[[], int],
        owner: str,
        local_dir: Path | None,
        memory_budget_mb: int,
    ) -> None:
        from rocksdict import Rdict

        self.key_groups = key_groups
        self.max_parallelism = max_parallelism
        self.clock = clock
        self.current_key: Any = None
        self.namespaced: set[str] = set()
        self.snapshots_in_flight = 0
        #: Whether new tables record their changed keys (:mod:`flowactors.state.changes`).
        self.track_changes = False
        self.memory_budget_mb = memory_budget_mb
        base = local_dir or Path(tempfile.gettempdir()) / "flowactors-rocksdb"
        base.mkdir(parents=True, exist_ok=True)
        reclaim_working_dirs(base)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{owner}-", dir=base))
        self._lock = _lock_working_dir(self.workdir)
        self.path = self.workdir / "db"
        self.db = Rdict(str(self.path), _options(memory_budget_mb))
        self.tables: dict[str, RocksTable] = {}
        self._descriptors: dict[str, StateDescriptor[Any]] = {}
        self._handles: dict[str, Any] = {}
        self._groups: dict[Any, int] = {}
        #: SST files uploaded by earlier checkpoints: name -> (size, checksum)
        self._uploaded: dict[str, tuple[int, str]] = {}
        self._snapshot_seq = 0
        self.closed = False

    def key_group(self, key: Any) -> int:
        groups = self._groups
        group = groups.get(key)
        if group is None:
            if len(groups) > 1 << 16:
                groups.clear()
            group = groups[key] = key_group_for(key, self.max_parallelism)
        return group

    def table(self, name: str, namespaced: bool = False) -> RocksTable:
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = RocksTable(self, name, namespaced)
            if namespaced:
                self.namespaced.add(name)
        return t

    def num_entries(self) -> int:
        if self.closed:
            return 0
        count = 0
        it = self.db.iter()
        it.seek_to_first()
        while it.valid():
            count += 1
            it.next()
        return count

    def keys(self, state_name: str) -> list[Any]:
        t = self.tables.get(state_name)
        if t is None:
            return []
        keys = list(t)
        if t.namespaced:
            return list(dict.fromkeys(k[0] for k in keys))
        return keys

    # -- snapshots ----------------------------------------------------------

    def snapshot_tables(self) -> dict[str, dict[Any, Any]]:
        return {}  # the tables travel as RocksDB files (see native_snapshot)

    def snapshot_released(self) -> None:
        pass

    def native_snapshot(self) -> RocksSnapshot:
        """The synchronous part: flush and hard-link the live files (no data copied)."""
        from rocksdict import Checkpoint

        self.db.flush()
        self._snapshot_seq += 1
        target = self.workdir / f"snapshot-{self._snapshot_seq}"
        Checkpoint(self.db).create_checkpoint(str(target))
        return RocksSnapshot(self, target)

    def restore_table(self, name: str, entries: dict[Any, Any], namespaced: bool) -> None:
        table = self.table(name, namespaced)
        for k, v in entries.items():
            table[k] = v

    async def restore_native(self, parts: list[dict[str, Any]], read: Any) -> None:
        """Take back the key groups this subtask owns from RocksDB files of a checkpoint."""
        mine = self.key_groups
        for part in parts:
            start, stop = part["key_groups"]
            if stop <= mine.start or start >= mine.stop:
                continue
            scratch = Path(tempfile.mkdtemp(prefix="restore-", dir=self.workdir))
            try:
                for entry in part["files"]:
                    data = await read(FileInfo.from_json(entry))
                    (scratch / entry["name"]).write_bytes(data)
                await asyncio.to_thread(
                    self._copy_range, scratch, max(start, mine.start), min(stop, mine.stop)
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        for name in {n for part in parts for n in part.get("namespaced", [])}:
            self.namespaced.add(name)
        for name in {n for part in parts for n in part.get("tables", [])}:
            self.table(name, name in self.namespaced)

    def _copy_range(self, source: Path, start: int, stop: int) -> None:
        from rocksdict import Options, Rdict, WriteBatch

        options = Options(raw_mode=True)
        old = Rdict(str(source), options)
        try:
            it = old.iter()
            it.seek(start.to_bytes(2, "big"))
            end = stop.to_bytes(2, "big")
            batch = WriteBatch(raw_mode=True)
            n = 0
            while it.valid():
                k = it.key()
                if k >= end:
                    break
                batch.put(k, it.value())
                n += 1
                if n % 10_000 == 0:
                    self.db.write(batch)
                    batch = WriteBatch(raw_mode=True)
                it.next()
            self.db.write(batch)
        finally:
            old.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.db.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self._lock is not None:
                os.close(self._lock)


_LOCK = "owner.lock"


def _lock_working_dir(workdir: Path) -> int | None:
    """Lock ``workdir/owner.lock`` for the life of this process (or until closed).

    The file is locked before it gets its name, so a reclaiming process never sees
    an unlocked lock file of a live owner."""
    if fcntl is None:
        return None
    tmp = workdir / f"{_LOCK}.new"
    fd = os.open(tmp, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, str(os.getpid()).encode())
    os.replace(tmp, workdir / _LOCK)
    return fd


def reclaim_working_dirs(base: Path) -> list[Path]:
    """Delete the working directories under ``base`` whose owner is gone; return them."""
    if fcntl is None:
        return []
    reclaimed = []
    for directory in base.iterdir():
        lock = directory / _LOCK
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # no lock file (or already gone): not ours to judge
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its owner is alive
            shutil.rmtree(directory, ignore_errors=True)
            reclaimed.append(directory)
        finally:
            os.close(fd)
    if reclaimed:
        log.info(
            "reclaimed %d RocksDB working director%s of ended processes in %s",
            len(reclaimed),
            "y" if len(reclaimed) == 1 else "ies",
            base,
        )
    return reclaimed


class RocksSnapshot:
    """Hard-linked files of one RocksDB checkpoint, waiting to be uploaded."""

    def __init__(self, backend: RocksDBKeyedStateBackend, directory: Path) -> None:
        self.backend = backend
        self.directory = directory
        self.tables = sorted(backend.tables)
        self.namespaced = sorted(backend.namespaced)

    async def write(
        self, checkpoint_dir: Path, shared_dir: Path | None, uid: str, subtask: int
    ) -> dict[str, Any]:
        """Upload; with ``shared_dir`` (checkpoints) only SST files not uploaded before."""
        try:
            return await asyncio.to_thread(self._write, checkpoint_dir, shared_dir, uid, subtask)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _write(
        self, checkpoint_dir: Path, shared_dir: Path | None, uid: str, subtask: int
    ) -> dict[str, Any]:
        uploaded = self.backend._uploaded
        files = []
        new_bytes = 0
        for path in sorted(self.directory.iterdir()):
            name = path.name
            size = path.stat().st_size
            if shared_dir is not None and name.endswith(".sst"):
                known = uploaded.get(name)
                # (the file may be gone: housekeeping after a failed checkpoint)
                if (
                    known is not None
                    and known[0] == size
                    and (shared_dir / f"{known[1]}.sst").exists()
                ):
                    digest = known[1]
                else:
                    data = path.read_bytes()
                    digest = checksum(data)
                    target = shared_dir / f"{digest}.sst"
                    if not target.exists():
                        write_durably(target, data)
                        new_bytes += size
                    uploaded[name] = (size, digest)
                relative = os.path.relpath(shared_dir / f"{digest}.sst", checkpoint_dir)
                files.append({"name": name, "path": relative, "size": size, "checksum": digest})
                continue
            data = path.read_bytes()
            relative = f"{uid}/rocksdb-{subtask}/{name}"
            write_durably(checkpoint_dir / relative, data)
            files.append({"name": name, "path": relative, "size": size, "checksum": checksum(data)})
        groups = self.backend.key_groups
        return {
            "subtask": subtask,
            "key_groups": [groups.start, groups.stop],
            "files": files,
            "tables": self.tables,
            "namespaced": self.namespaced,
            #: SST bytes this snapshot added to the shared directory
            "uploaded_bytes": new_bytes,
        }


def read_snapshot_entries(
    directory: Path, name: str, key_groups: range
) -> Iterator[tuple[Any, Any]]:
    """``(key, value)`` of every entry of state ``name`` in ``key_groups``, read from the
    files of one subtask's RocksDB snapshot gathered in ``directory`` under their own
    names (opened read-only; a namespaced state's keys are ``(key, namespace)``)."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(directory), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        tag = name.encode() + b"\x00"
        for group in key_groups:
            prefix = group.to_bytes(2, "big") + tag
            it = db.iter()
            it.seek(prefix)
            while it.valid():
                if not it.key().startswith(prefix):
                    break
                key, value = pickle.loads(it.value())
                yield key, value
                it.next()
    finally:
        db.close()
