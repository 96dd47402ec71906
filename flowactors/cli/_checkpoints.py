"""``flowactors checkpoints list|inspect``: what a checkpoint storage holds, read-only.

``list DIR`` finds every complete checkpoint and savepoint (a directory with a
``_metadata`` file) up to three levels below ``DIR`` — the storage given to
``enable_checkpointing`` holds ``<job>-<hash>/chk-<id>/``, and ``flowactors run``
puts savepoints in ``savepoints/<job>-<time>/`` — and prints one line each.
``inspect PATH`` shows one of them: its operators with uid, parallelism, size,
key groups and operator-state entries (a source's positions, such as Kafka
offsets, or a sink's pending transactions), and whether every file matches the
checksum its metadata recorded. Keyed state kept in RocksDB is described from
its subtasks' parts: key-group ranges, state names, files and bytes, and how
many of those bytes are SST files in the storage's ``shared/`` directory (an
incremental checkpoint refers to them there, uploaded by it or by an earlier
checkpoint).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowactors.checkpoint.config import PICKLE
from flowactors.checkpoint.storage import METADATA, CompletedCheckpoint
from flowactors.errors import CheckpointError
from flowactors.state.files import FileInfo

#: Operator-state entries shown per operator by ``inspect``.
MAX_ENTRIES = 50


def _find(directory: Path, depth: int = 3) -> Iterator[Path]:
    if (directory / METADATA).is_file():
        yield directory
        return
    if depth == 0:
        return
    try:
        children = sorted(p for p in directory.iterdir() if p.is_dir())
    except OSError:
        return
    for child in children:
        if child.name != "shared":
            yield from _find(child, depth - 1)


def _metadata(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / METADATA).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _size(metadata: dict[str, Any], directory: Path) -> int:
    return sum(info.size for info in CompletedCheckpoint(directory, metadata).files())


def _when(timestamp_ms: int | None) -> str:
    if not timestamp_ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp_ms / 1000)) + "Z"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


def list_checkpoints(directory: str, as_json: bool = False) -> int:
    root = Path(directory)
    if not root.is_dir():
        print(f"flowactors checkpoints list: {root} is not a directory", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    for path in _find(root):
        meta = _metadata(path)
        if meta is None:
            rows.append({"path": str(path), "error": "unreadable metadata"})
            continue
        rows.append(
            {
                "job": meta.get("job"),
                "id": meta.get("checkpoint_id"),
                "kind": meta.get("kind"),
                "size_bytes": _size(meta, path),
                "timestamp_ms": meta.get("timestamp_ms"),
                "operators": len(meta.get("operators", {})),
                "path": str(path),
            }
        )
    rows.sort(key=lambda r: (str(r.get("job")), r.get("timestamp_ms") or 0, r.get("id") or 0))
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print(f"no complete checkpoint or savepoint under {root}")
        return 0
    header = ("JOB", "ID", "KIND", "SIZE", "TIME", "PATH")
    table = [
        (
            str(r.get("job", "?")),
            str(r.get("id", "?")),
            str(r.get("kind", r.get("error", "?"))),
            _bytes(r.get("size_bytes", 0)),
            _when(r.get("timestamp_ms")),
            r["path"],
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header) - 1)]
    for line in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1])
    return 0


def _key_groups(groups: list[int]) -> str:
    """``[0, 1, 2, 7]`` → ``"0-2, 7"``."""
    spans: list[str] = []
    start = prev = None
    for g in sorted(groups):
        if start is None:
            start = prev = g
        elif prev is not None and g == prev + 1:
            prev = g
        else:
            spans.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = g
    if start is not None:
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(spans)


def _entries(checkpoint: CompletedCheckpoint, op: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for info in sorted(op.get("operator_state", []), key=lambda i: i["subtask"]):
        file = FileInfo.from_json(info)
        try:
            piece = (checkpoint.directory / file.path).read_bytes()
            values = PICKLE.loads(piece[file.offset : file.offset + file.size])
            decoded = [repr(v) for v in values]
        except Exception as exc:  # a class the CLI cannot import, or a corrupt file
            decoded = [f"<cannot decode: {type(exc).__name__}: {exc}>"]
        out.append({"subtask": info["subtask"], "size_bytes": file.size, "entries": decoded})
    return out


def _is_shared(relative_path: str) -> bool:
    """A file outside the checkpoint's own directory: an SST file of ``shared/``."""
    return relative_path.startswith("..")


def _rocksdb_parts(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    described = []
    for part in sorted(parts, key=lambda p: p["key_groups"][0]):
        start, stop = part["key_groups"]
        files = part["files"]
        described.append(
            {
                "subtask": part.get("subtask"),
                "key_groups": _key_groups(list(range(start, stop))),
                "files": len(files),
                "bytes": sum(int(f["size"]) for f in files),
                "shared_bytes": sum(int(f["size"]) for f in files if _is_shared(f["path"])),
            }
        )
    return described


def describe(path: Path) -> dict[str, Any]:
    """What ``inspect`` reports, as data."""
    meta = _metadata(path)
    if meta is None:
        raise CheckpointError(f"{path} holds no readable checkpoint metadata ({METADATA})")
    checkpoint = CompletedCheckpoint(path, meta)
    try:
        checkpoint.verify()
        verification = "ok: every file matches its recorded size and checksum"
        verified = True
    except CheckpointError as exc:
        verification = f"FAILED: {exc}"
        verified = False
    operators = []
    for uid, op in sorted(meta.get("operators", {}).items()):
        keyed = op.get("keyed", {})
        keyed_bytes = sum(int(i["size"]) for i in keyed.values())
        rocksdb = op.get("rocksdb", [])
        rocksdb_bytes = sum(int(f["size"]) for part in rocksdb for f in part["files"])
        rocksdb_groups = [g for part in rocksdb for g in range(*part["key_groups"])]
        state = _entries(checkpoint, op)
        names = {n.removeprefix("ns:") for part in rocksdb for n in part.get("tables", [])}
        operators.append(
            {
                "uid": uid,
                "parallelism": op.get("parallelism"),
                "max_parallelism": op.get("max_parallelism"),
                "key_groups": (
                    _key_groups([int(g) for g in keyed])
                    if keyed
                    else _key_groups(rocksdb_groups)
                    if rocksdb
                    else None
                ),
                "keyed_bytes": keyed_bytes,
                "rocksdb_bytes": rocksdb_bytes,
                "rocksdb_shared_bytes": sum(p["shared_bytes"] for p in _rocksdb_parts(rocksdb)),
                "rocksdb_subtasks": _rocksdb_parts(rocksdb),
                #: State names (known without decoding for RocksDB; ``None`` in memory).
                "states": sorted(names) if rocksdb else None,
                "operator_state_bytes": sum(s["size_bytes"] for s in state),
                "operator_state": state,
            }
        )
    return {
        "path": str(path),
        "job": meta.get("job"),
        "id": meta.get("checkpoint_id"),
        "kind": meta.get("kind"),
        "timestamp_ms": meta.get("timestamp_ms"),
        "size_bytes": _size(meta, path),
        "verified": verified,
        "verification": verification,
        "operators": operators,
    }


def inspect_checkpoint(path: str, as_json: bool = False) -> int:
    try:
        info = describe(Path(path))
    except CheckpointError as exc:
        print(f"flowactors checkpoints inspect: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(info, indent=1))
        return 0 if info["verified"] else 1
    print(f"{info['kind']} {info['id']} of job {info['job']!r}  ({info['path']})")
    print(f"  taken:        {_when(info['timestamp_ms'])}")
    print(f"  size:         {_bytes(info['size_bytes'])}")
    print(f"  verification: {info['verification']}")
    for op in info["operators"]:
        print(f"  operator {op['uid']!r}: parallelism {op['parallelism']}")
        if op["rocksdb_subtasks"]:
            shared = op["rocksdb_shared_bytes"]
            print(
                f"    keyed state in RocksDB: {_bytes(op['rocksdb_bytes'])} in key groups "
                f"{op['key_groups']} (max parallelism {op['max_parallelism']})"
                + (f", {_bytes(shared)} of it in shared SST files (incremental)" if shared else "")
            )
            print(f"    states: {', '.join(op['states']) or '-'}")
            for part in op["rocksdb_subtasks"]:
                print(
                    f"    subtask {part['subtask']}: key groups {part['key_groups']}, "
                    f"{part['files']} files, {_bytes(part['bytes'])}"
                )
        elif op["key_groups"] is not None:
            print(
                f"    keyed state:    {_bytes(op['keyed_bytes'])} in key groups "
                f"{op['key_groups']} (max parallelism {op['max_parallelism']})"
            )
        for part in op["operator_state"]:
            shown = part["entries"][:MAX_ENTRIES]
            more = len(part["entries"]) - len(shown)
            print(
                f"    operator state of subtask {part['subtask']}: "
                f"{len(part['entries'])} entries, {_bytes(part['size_bytes'])}"
            )
            for entry in shown:
                print(f"      {entry}")
            if more > 0:
                print(f"      ... {more} more")
    return 0 if info["verified"] else 1
