"""Snapshot files on disk: checksummed pieces, and writes that survive a crash.

Every file a snapshot writes goes through :func:`write_durably`: the bytes go to
a temporary file next to the target, which is fsynced, renamed into place and
its directory fsynced. A crash leaves either the old state or the complete new
file, never a torn one; a failed write (a full disk) leaves nothing behind.

A :class:`FileInfo` names a piece of such a file (path, offset, size) with the
BLAKE2b checksum of its bytes, so a reader can verify it before trusting it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FileInfo", "checksum", "fsync_dir", "read_piece", "write_durably", "write_file"]


def checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class FileInfo:
    """A piece of a snapshot: ``size`` bytes at ``offset`` of the file at ``path``
    (relative to the snapshot's directory), with their checksum."""

    path: str
    size: int
    checksum: str
    offset: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "size": self.size, "checksum": self.checksum}
        if self.offset:
            data["offset"] = self.offset
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> FileInfo:
        return FileInfo(
            str(data["path"]), int(data["size"]), str(data["checksum"]), int(data.get("offset", 0))
        )


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (blocking; see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


async def write_file(directory: Path, relative: str, data: bytes) -> FileInfo:
    """:func:`write_durably` to ``directory/relative`` off the event loop; its :class:`FileInfo`.

    The whole write happens in one worker-thread call, so cancelling the caller can
    never leave the file open.
    """
    digest = await asyncio.to_thread(_write_and_sum, directory / relative, data)
    return FileInfo(relative, len(data), digest)


async def write_parts(directory: Path, relative: str, parts: list[bytes]) -> FileInfo:
    """:func:`write_file` of ``b"".join(parts)``, joined in the worker thread as well."""
    size = sum(len(p) for p in parts)
    digest = await asyncio.to_thread(lambda: _write_and_sum(directory / relative, b"".join(parts)))
    return FileInfo(relative, size, digest)


def _write_and_sum(path: Path, data: bytes) -> str:
    write_durably(path, data)
    return checksum(data)


def read_piece(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)
