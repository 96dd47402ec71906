"""``flowactors state read``: one operator's keyed state, as JSON lines (read-only).

Like Flink's State Processor API, but for reading: every entry of state ``S``
of operator ``U`` in a checkpoint or savepoint, one object per line —
``{"key": ..., "value": ...}``, plus ``"namespace"`` for state scoped to a
window. Files are verified against their checksums first. Values are decoded
with pickle (the default checkpoint serializer), so the classes they hold must
be importable (the current directory is), and the storage must be trusted.
Windows (and other named tuples and dataclasses) become objects, other tuples
lists, and values JSON cannot hold their ``repr``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from flowactors.checkpoint.config import PICKLE
from flowactors.checkpoint.storage import CompletedCheckpoint
from flowactors.errors import CheckpointError
from flowactors.state.files import FileInfo


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
        print(
            f"flowactors state read: operator {uid!r} keeps its state in RocksDB files, "
            "which this command does not read",
            file=sys.stderr,
        )
        return 1
    keyed = op.get("keyed")
    if keyed is None:
        print(f"flowactors state read: operator {uid!r} has no keyed state", file=sys.stderr)
        return 1
    names: set[str] = set()
    found = False
    out = sys.stdout
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
            if table is None:
                continue
            found = True
            namespaced = namespaced or name in payload["namespaced"]
            for k, value in table.items():
                if namespaced:
                    record = {"key": k[0], "namespace": k[1], "value": value}
                else:
                    record = {"key": k, "value": value}
                out.write(json.dumps(_jsonable(record)) + "\n")
    if not found and names:
        print(
            f"flowactors state read: operator {uid!r} has no state {state!r}; "
            f"it has: {', '.join(sorted(names))}",
            file=sys.stderr,
        )
        return 1
    return 0
