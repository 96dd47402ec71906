"""``flowactors state read``: one operator's keyed state, as JSON lines (read-only).

Like Flink's State Processor API, but for reading: every entry of state ``S``
of operator ``U`` in a checkpoint or savepoint, one object per line —
``{"key": ..., "value": ...}``, plus ``"namespace"`` for state scoped to a
window. Files are verified against their checksums first. State kept in
memory travels as pickled tables per key group; state kept in RocksDB as each
subtask's RocksDB files (an incremental checkpoint's SST files in the storage's
``shared/`` directory), which are gathered under their own names in a
temporary directory (linked, not copied) and opened read-only. Values are
decoded with pickle (the default checkpoint serializer, and RocksDB's entry
format), so the classes they hold must be importable (the current directory
is), and the storage must be trusted.
Windows (and other named tuples and dataclasses) become objects, other tuples
lists, and values JSON cannot hold their ``repr``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from flowactors.checkpoint.config import PICKLE
from flowactors.checkpoint.storage import CompletedCheckpoint
from flowactors.errors import CheckpointError
from flowactors.state.files import FileInfo
from flowactors.state.rocksdb import read_snapshot_entries


def _plain(value: Any) -> Any:
    """Named tuples (windows) and dataclasses as objects, other tuples as lists."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {
            k if isinstance(k, str) else json.dumps(_plain(k)): _plain(v) for k, v in value.items()
        }
    return value


def _key(k: Any) -> str:
    return k if isinstance(k, str) else json.dumps(_plain(k), default=repr)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(_plain(value), default=repr))


def read_state(path: str, uid: str, state: str) -> int:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # user classes in pickled values
    try:
        checkpoint = CompletedCheckpoint.load(Path(path))
    except CheckpointError as exc:
        print(f"flowactors state read: {exc}", file=sys.stderr)
        return 1
    operators = checkpoint.operators()
    op = operators.get(uid)
    if op is None:
        print(
            f"flowactors state read: no operator with uid {uid!r} in {path}; "
            f"it holds: {', '.join(sorted(operators)) or 'nothing'}",
            file=sys.stderr,
        )
        return 1
    if op.get("rocksdb"):
        entries, names, found = _rocksdb_entries(checkpoint, op["rocksdb"], state)
    elif op.get("keyed") is not None:
        entries, names, found = _heap_entries(checkpoint, op["keyed"], state)
    else:
        print(f"flowactors state read: operator {uid!r} has no keyed state", file=sys.stderr)
        return 1
    if not found and names:
        print(
            f"flowactors state read: operator {uid!r} has no state {state!r}; "
            f"it has: {', '.join(sorted(names))}",
            file=sys.stderr,
        )
        return 1
    _write(entries, sys.stdout)
    return 0


Entries = Iterator[tuple[Any, Any, bool]]


def _write(entries: Entries, out: TextIO) -> None:
    for key, value, namespaced in entries:
        if namespaced:
            record = {"key": key[0], "namespace": key[1], "value": value}
        else:
            record = {"key": key, "value": value}
        out.write(json.dumps(_jsonable(record)) + "\n")


def _heap_entries(
    checkpoint: CompletedCheckpoint, keyed: dict[str, Any], state: str
) -> tuple[Entries, set[str], bool]:
    """State kept in memory: a pickled payload of tables per key group."""
    names: set[str] = set()
    found: list[tuple[dict[Any, Any], bool]] = []
    for group in sorted(keyed, key=int):
        info = FileInfo.from_json(keyed[group])
        piece = (checkpoint.directory / info.path).read_bytes()[
            info.offset : info.offset + info.size
        ]
        payload = PICKLE.loads(piece)
        tables: dict[str, dict[Any, Any]] = payload["tables"]
        names.update(n.removeprefix("ns:") for n in tables)
        for name, namespaced in ((state, False), ("ns:" + state, True)):
            table = tables.get(name)
            if table is not None:
                found.append((table, namespaced or name in payload["namespaced"]))

    def entries() -> Entries:
        for table, namespaced in found:
            for key, value in table.items():
                yield key, value, namespaced

    return entries(), names, bool(found)


def _rocksdb_entries(
    checkpoint: CompletedCheckpoint, parts: list[dict[str, Any]], state: str
) -> tuple[Entries, set[str], bool]:
    """State kept in RocksDB: every subtask's database files, read in key-group order."""
    names = {n.removeprefix("ns:") for part in parts for n in part.get("tables", [])}
    wanted = [
        (part, name, namespaced or name in part.get("namespaced", []))
        for part in sorted(parts, key=lambda p: p["key_groups"][0])
        for name, namespaced in ((state, False), ("ns:" + state, True))
        if name in part.get("tables", [])
    ]

    def entries() -> Entries:
        for part, name, namespaced in wanted:
            start, stop = part["key_groups"]
            with tempfile.TemporaryDirectory(prefix="flowactors-state-read-") as scratch:
                _gather(checkpoint, part["files"], Path(scratch))
                for key, value in read_snapshot_entries(Path(scratch), name, range(start, stop)):
                    yield key, value, namespaced

    return entries(), names, bool(wanted)


def _gather(checkpoint: CompletedCheckpoint, files: list[dict[str, Any]], into: Path) -> None:
    """A subtask's RocksDB files under their own names in ``into``: links to whole files
    of the storage, copies of pieces."""
    for entry in files:
        info = FileInfo.from_json(entry)
        source = (checkpoint.directory / info.path).resolve()
        target = into / entry["name"]
        if info.offset == 0 and source.stat().st_size == info.size:
            os.symlink(source, target)
        else:
            with source.open("rb") as f:
                f.seek(info.offset)
                target.write_bytes(f.read(info.size))
