"""Checkpoint storage on the local file system.

Layout of one checkpoint (or savepoint; a savepoint's directory is the path
the user gave)::

    <root>/<job>/chk-00000042/
        <uid>/kg-<g>.bin        keyed state and timers of key group g
        <uid>/op-<subtask>.bin  operator state entries of one subtask
        _metadata               JSON: format version, files, sizes, checksums

``<job>`` is the job name made safe for a file name, a dash, and 12 hex digits
of a hash of the exact name, so names that read alike ("ledger v1",
"ledger-v1") never share a directory; ``<root>/<job>/_job`` holds the exact
name. A job only ever loads, retains or deletes checkpoints whose metadata
names it. Checkpoints in the directory of the earlier layout (the safe name
alone) are still found for restore when their metadata names the job, and are
left alone otherwise.

``_metadata`` is written last and atomically (temporary file, fsync, rename,
fsync of the directory): a checkpoint directory without it is incomplete.
Every data file's size and BLAKE2b checksum are recorded there and verified
before anything is deserialised, so a truncated or corrupted checkpoint is
detected, and recovery falls back to the previous complete one (when there
is none, :meth:`CheckpointStorage.latest_valid` can refuse instead).

Savepoints the job takes (wherever their directory is) are recorded in
``<root>/<job>/_savepoints``, a JSON list rewritten atomically when one
completes, so that the next start can resume from a savepoint that is newer
than the newest checkpoint (a service stopped with ``stop_with_savepoint``).
Checkpoints and savepoints of a job draw their ids from one counter, so the
highest id is the newest snapshot, and the one whose output was committed last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowactors.errors import CheckpointError, CorruptCheckpointError, NoValidCheckpointError
from flowactors.state.files import FileInfo, checksum, read_piece, write_durably

log = logging.getLogger("flowactors.checkpoint")

FORMAT_VERSION = 1
METADATA = "_metadata"
SAVEPOINTS = "_savepoints"
#: Per operator uid, the highest parallelism any run started with.
PARALLELISM = "_parallelism"
#: Savepoints remembered per job; older entries are dropped from the record.
_SAVEPOINTS_KEPT = 10
_CHECKPOINT_DIR = re.compile(r"^chk-(\d+)$")


JOB_MARKER = "_job"


def _safe_name(job_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-") or "job"


def job_dir_name(job_name: str) -> str:
    """The directory of a job's checkpoints: readable, and different for different names."""
    digest = hashlib.blake2b(job_name.encode(), digest_size=6).hexdigest()
    return f"{_safe_name(job_name)}-{digest}"


def write_metadata_atomically(directory: Path, metadata: dict[str, Any]) -> None:
    write_durably(directory / METADATA, json.dumps(metadata, indent=1, sort_keys=True).encode())


class CompletedCheckpoint:
    """A complete checkpoint or savepoint on disk, verified, ready to restore from."""

    def __init__(self, directory: Path, metadata: dict[str, Any]) -> None:
        self.directory = directory
        self.metadata = metadata

    @property
    def checkpoint_id(self) -> int:
        return int(self.metadata["checkpoint_id"])

    @property
    def job_name(self) -> str:
        return str(self.metadata["job"])

    @property
    def kind(self) -> str:
        """``"checkpoint"`` or ``"savepoint"``."""
        return str(self.metadata.get("kind", "checkpoint"))

    def operators(self) -> dict[str, dict[str, Any]]:
        ops: dict[str, dict[str, Any]] = self.metadata["operators"]
        return ops

    def files(self) -> Iterator[FileInfo]:
        for op in self.operators().values():
            for info in op.get("keyed", {}).values():
                yield FileInfo.from_json(info)
            for info in op.get("operator_state", []):
                yield FileInfo.from_json(info)
            for part in op.get("rocksdb", []):
                for info in part["files"]:
                    yield FileInfo.from_json(info)

    def verify(self) -> None:
        """Check every piece's size and checksum; raise :class:`CorruptCheckpointError`."""
        contents: dict[str, bytes] = {}
        for info in self.files():
            path = self.directory / info.path
            data = contents.get(info.path)
            if data is None:
                try:
                    data = contents[info.path] = path.read_bytes()
                except OSError as exc:
                    raise CorruptCheckpointError(f"{path}: cannot be read ({exc})") from exc
            piece = data[info.offset : info.offset + info.size]
            if len(piece) != info.size:
                raise CorruptCheckpointError(
                    f"{path}: truncated ({len(data)} bytes; the metadata needs "
                    f"{info.offset + info.size})"
                )
            if checksum(piece) != info.checksum:
                raise CorruptCheckpointError(f"{path}: checksum does not match the metadata")

    async def read(self, info: FileInfo) -> bytes:
        path = self.directory / info.path
        data = await asyncio.to_thread(read_piece, path, info.offset, info.size)
        if len(data) != info.size or checksum(data) != info.checksum:
            raise CorruptCheckpointError(f"{path}: changed since the checkpoint was verified")
        return data

    @staticmethod
    def load(directory: Path) -> CompletedCheckpoint:
        """Read and verify the checkpoint in ``directory``."""
        meta_path = directory / METADATA
        try:
            metadata = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            raise CheckpointError(
                f"{directory} holds no complete checkpoint or savepoint"
            ) from None
        except (OSError, ValueError) as exc:
            raise CorruptCheckpointError(f"{meta_path}: unreadable metadata ({exc})") from exc
        version = metadata.get("format") if isinstance(metadata, dict) else None
        if version != FORMAT_VERSION:
            raise CorruptCheckpointError(
                f"{meta_path}: unknown format {version!r} (this version reads {FORMAT_VERSION})"
            )
        checkpoint = CompletedCheckpoint(directory, metadata)
        checkpoint.verify()
        return checkpoint


class CheckpointStorage:
    """Checkpoints of one job under ``root/<job>/`` (see the module docstring)."""

    def __init__(self, root: Path, job_name: str) -> None:
        self.root = root
        self.job_name = job_name
        self.job_dir = root / job_dir_name(job_name)
        #: Where the earlier layout kept this job's checkpoints (read for restore only).
        self.legacy_dir = root / _safe_name(job_name)

    def checkpoint_dir(self, checkpoint_id: int) -> Path:
        return self.job_dir / f"chk-{checkpoint_id:08d}"

    def claim(self) -> None:
        """Make the job's directory and mark it as this job's (blocking)."""
        marker = self.job_dir / JOB_MARKER
        try:
            owner = marker.read_text()
        except FileNotFoundError:
            write_durably(marker, self.job_name.encode())
            return
        if owner != self.job_name:
            raise CheckpointError(
                f"{self.job_dir} holds the checkpoints of job {owner!r}, not of "
                f"{self.job_name!r}: use another checkpoint storage for one of them"
            )

    @staticmethod
    def _ids_in(directory: Path) -> list[int]:
        if not directory.is_dir():
            return []
        ids = []
        for entry in directory.iterdir():
            m = _CHECKPOINT_DIR.match(entry.name)
            if m and entry.is_dir():
                ids.append(int(m.group(1)))
        return sorted(ids)

    def _ids(self) -> list[int]:
        return self._ids_in(self.job_dir)

    def completed_ids(self) -> list[int]:
        """Ids of checkpoints whose metadata was written (not yet verified)."""
        return [i for i in self._ids() if (self.checkpoint_dir(i) / METADATA).exists()]

    def _legacy_completed(self) -> dict[int, Path]:
        """Complete checkpoints in the earlier layout's directory."""
        if self.legacy_dir == self.job_dir:
            return {}
        found = {}
        for i in self._ids_in(self.legacy_dir):
            directory = self.legacy_dir / f"chk-{i:08d}"
            if (directory / METADATA).exists():
                found[i] = directory
        return found

    def _owner(self, directory: Path) -> str | None:
        """The job named in a checkpoint's metadata (``None``: unreadable)."""
        try:
            metadata = json.loads((directory / METADATA).read_bytes())
            return str(metadata["job"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def latest_id(self) -> int:
        """The largest snapshot id ever started here (complete or not, checkpoint or
        recorded savepoint), or 0."""
        ids = self._ids() + [checkpoint_id for checkpoint_id, _ in self.savepoints()]
        ids += self._legacy_completed()
        return max(ids, default=0)

    # -- savepoints the job took ------------------------------------------------

    def savepoints(self) -> list[tuple[int, Path]]:
        """Recorded savepoints of this job: (id, directory), oldest first."""
        try:
            entries = json.loads((self.job_dir / SAVEPOINTS).read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise CorruptCheckpointError(
                f"{self.job_dir / SAVEPOINTS}: unreadable record of savepoints ({exc})"
            ) from exc
        return sorted((int(e["id"]), Path(e["path"])) for e in entries)

    def record_savepoint(self, checkpoint_id: int, directory: Path) -> None:
        """Remember a completed savepoint of this job (atomically; blocking)."""
        entries = [(i, d) for i, d in self.savepoints() if i != checkpoint_id]
        entries.append((checkpoint_id, directory.resolve()))
        entries = sorted(entries)[-_SAVEPOINTS_KEPT:]
        data = [{"id": i, "path": str(d)} for i, d in entries]
        write_durably(self.job_dir / SAVEPOINTS, json.dumps(data, indent=1).encode())

    def record_parallelism(self, parallelism: dict[str, int]) -> dict[str, int]:
        """Remember, per operator uid, the highest parallelism any run of this job has
        started with (atomically, before the run starts); return it, this run included.

        Sinks that give each subtask its own external resources (transactional ids)
        learn from it which subtasks an earlier run may have had, even one that never
        completed a checkpoint, so they can clean up after all of them.
        """
        path = self.job_dir / PARALLELISM
        try:
            recorded = {str(k): int(v) for k, v in json.loads(path.read_bytes()).items()}
        except FileNotFoundError:
            recorded = {}
        except (OSError, ValueError, AttributeError) as exc:
            raise CorruptCheckpointError(
                f"{path}: unreadable record of the parallelism of earlier runs ({exc})"
            ) from exc
        merged = dict(recorded)
        for uid, p in parallelism.items():
            merged[uid] = max(p, merged.get(uid, 0))
        if merged != recorded:
            write_durably(path, json.dumps(merged, indent=1, sort_keys=True).encode())
        return merged

    # -- choosing what to restore ---------------------------------------------

    def _candidates(self, min_id: int) -> list[tuple[int, Path]]:
        """Complete checkpoints and recorded savepoints with id >= ``min_id``, newest first."""
        found = {i: self.checkpoint_dir(i) for i in self.completed_ids() if i >= min_id}
        for i, directory in [*self._legacy_completed().items(), *self.savepoints()]:
            if i >= min_id:
                found.setdefault(i, directory)
        return sorted(found.items(), reverse=True)

    def latest_valid(self, min_id: int = 0, *, strict: bool = False) -> CompletedCheckpoint | None:
        """The newest checkpoint or recorded savepoint (id >= ``min_id``) that verifies;
        damaged ones are skipped with a log line. ``strict``: when there are some but
        none verifies, raise :class:`NoValidCheckpointError` naming each."""
        failures: list[tuple[int, Path, str]] = []
        for checkpoint_id, directory in self._candidates(min_id):
            kind = "checkpoint" if self._is_checkpoint_dir(directory) else "savepoint"
            try:
                checkpoint = CompletedCheckpoint.load(directory)
            except CheckpointError as exc:
                log.warning(
                    "%s %d of job %r is corrupt or incomplete, using an earlier one: %s",
                    kind,
                    checkpoint_id,
                    self.job_name,
                    exc,
                )
                failures.append((checkpoint_id, directory, f"{kind} {checkpoint_id}: {exc}"))
                continue
            if checkpoint.job_name != self.job_name:
                log.warning("%s belongs to job %r, skipping it", directory, checkpoint.job_name)
                continue
            return checkpoint
        if strict and failures:
            lines = "\n".join(f"  {reason}" for _, _, reason in failures)
            raise NoValidCheckpointError(
                f"job {self.job_name!r} has {len(failures)} complete snapshot"
                f"{'s' if len(failures) > 1 else ''} in {self.job_dir} and none verifies:\n"
                f"{lines}\nStarting with empty state would commit again the output they "
                "covered. Repair or replace them, start from a savepoint (savepoint_path=...), "
                "or choose enable_checkpointing(..., resume='latest-or-empty') to start empty.",
                [(str(directory), reason) for _, directory, reason in failures],
            )
        return None

    def _is_checkpoint_dir(self, directory: Path) -> bool:
        return _CHECKPOINT_DIR.match(directory.name) is not None and directory.parent in (
            self.job_dir,
            self.legacy_dir,
        )

    def commit(self, checkpoint_id: int, metadata: dict[str, Any]) -> Path:
        directory = self.checkpoint_dir(checkpoint_id)
        directory.mkdir(parents=True, exist_ok=True)
        write_metadata_atomically(directory, metadata)
        return directory

    def discard(self, checkpoint_id: int) -> None:
        """Delete an aborted checkpoint of this job (never one naming another job)."""
        directory = self.checkpoint_dir(checkpoint_id)
        owner = self._owner(directory)
        if owner is None or owner == self.job_name:
            shutil.rmtree(directory, ignore_errors=True)

    def retain(self, keep: int) -> None:
        """Keep the newest ``keep`` complete checkpoints of this job; delete its older
        ones and incomplete directories older than its newest complete one.
        Checkpoints whose metadata names another job are never touched."""
        complete = self.completed_ids()
        foreign = set()
        for checkpoint_id in complete:
            owner = self._owner(self.checkpoint_dir(checkpoint_id))
            if owner is not None and owner != self.job_name:
                foreign.add(checkpoint_id)
        own = [i for i in complete if i not in foreign]
        if not own:
            return
        kept = set(own[-keep:])
        newest = own[-1]
        for checkpoint_id in self._ids():
            if checkpoint_id in kept or checkpoint_id in foreign:
                continue
            if checkpoint_id in complete or checkpoint_id < newest:
                shutil.rmtree(self.checkpoint_dir(checkpoint_id), ignore_errors=True)
        self._collect_shared(kept | foreign)

    @property
    def shared_dir(self) -> Path:
        """Files that several checkpoints share (incremental RocksDB snapshots)."""
        return self.job_dir / "shared"

    def collect_shared(self) -> None:
        """Delete shared files no complete checkpoint refers to (only while no
        checkpoint of the job is being written)."""
        self._collect_shared(set(self.completed_ids()))

    def reclaim(self) -> None:
        """Delete what writes of earlier runs left behind: incomplete checkpoint
        directories, temporary files, and shared files no checkpoint refers to.

        Only at the start of a run, when nothing of this job is being written."""
        complete = set(self.completed_ids())
        for checkpoint_id in self._ids():
            if checkpoint_id not in complete:
                shutil.rmtree(self.checkpoint_dir(checkpoint_id), ignore_errors=True)
        if self.job_dir.is_dir():
            for leftover in self.job_dir.glob("*.tmp"):
                leftover.unlink(missing_ok=True)
        if self.shared_dir.is_dir():
            for leftover in self.shared_dir.glob("*.tmp"):
                leftover.unlink(missing_ok=True)
        self._collect_shared(complete)

    def _collect_shared(self, kept: set[int]) -> None:
        """Delete shared files no kept checkpoint refers to."""
        shared = self.shared_dir
        if not shared.is_dir():
            return
        used: set[str] = set()
        for checkpoint_id in kept:
            directory = self.checkpoint_dir(checkpoint_id)
            try:
                metadata = json.loads((directory / METADATA).read_bytes())
            except (OSError, ValueError):
                return  # unsure what is in use: keep everything
            for op in metadata.get("operators", {}).values():
                for part in op.get("rocksdb", []):
                    for info in part["files"]:
                        used.add(os.path.normpath(directory / info["path"]))
        for path in shared.iterdir():
            if os.path.normpath(path) not in used and not path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)


def metadata_for(
    job_name: str,
    checkpoint_id: int,
    kind: str,
    operators: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "job": job_name,
        "checkpoint_id": checkpoint_id,
        "kind": kind,
        "timestamp_ms": int(time.time() * 1000),
        "operators": operators,
    }
