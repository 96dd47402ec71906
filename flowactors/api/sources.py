"""Built-in sources: collections, generators, text files and JSON-lines files.

They are written against :mod:`flowactors.spi` like any connector.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import aiofiles
import orjson

from flowactors.errors import MalformedRecordError
from flowactors.runtime.operators import is_async_callable
from flowactors.spi import (
    Boundedness,
    InputStatus,
    ReaderOutput,
    Source,
    SourceReader,
    SourceReaderContext,
)

T = TypeVar("T")

MORE = InputStatus.MORE_AVAILABLE
END = InputStatus.END_OF_INPUT
NOTHING = InputStatus.NOTHING_AVAILABLE


@dataclass(frozen=True)
class MalformedRecord:
    """A record a source could not decode, sent to a side output instead of failing the job.

    ``source`` names the file (or topic), ``position`` the line (or partition
    and offset), ``raw`` the undecoded input and ``error`` what was wrong.
    """

    source: str
    position: Any
    raw: bytes
    error: str


# -- collection --------------------------------------------------------------


class CollectionSource(Source[T]):
    """The elements of an iterable, in order, from one subtask."""

    max_parallelism = 1

    def __init__(self, elements: Iterable[T]) -> None:
        self.elements = elements

    def create_reader(self, context: SourceReaderContext) -> SourceReader[T]:
        return _CollectionReader(self.elements, context.batch_size)


class _CollectionReader(SourceReader[T]):
    def __init__(self, elements: Iterable[T], batch_size: int) -> None:
        self.batch_size = batch_size
        self.list: list[T] | None = elements if isinstance(elements, list) else None
        self.iter: Iterator[T] | None = None if self.list is not None else iter(elements)
        self.pos = 0

    async def poll_next(self, output: ReaderOutput[T]) -> InputStatus:
        if self.list is not None:
            batch = self.list[self.pos : self.pos + self.batch_size]
            self.pos += len(batch)
            done = self.pos >= len(self.list)
        else:
            assert self.iter is not None
            batch = list(islice(self.iter, self.batch_size))
            done = len(batch) < self.batch_size
        if batch:
            await output.collect_batch(batch)
        return END if done else MORE


# -- generator ---------------------------------------------------------------


class GeneratorSource(Source[T]):
    """``fn(index)`` for ``index`` in ``0..count-1`` (or forever), optionally at ``rate``/s.

    Parallel: with parallelism *p*, subtask *s* generates a contiguous share of
    the indices (or, when endless, every *p*-th index from *s*), and the rate is
    split evenly between subtasks.
    """

    def __init__(
        self,
        fn: Callable[[int], T] | Callable[[int], Awaitable[T]],
        count: int | None = None,
        rate: float | None = None,
    ) -> None:
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 records/s, got {rate}")
        self.fn = fn
        self.count = count
        self.rate = rate
        self.boundedness = (
            Boundedness.BOUNDED if count is not None else Boundedness.CONTINUOUS_UNBOUNDED
        )

    def create_reader(self, context: SourceReaderContext) -> SourceReader[T]:
        p, s = context.parallelism, context.subtask_index
        if self.count is not None:
            indices: Iterator[int] = iter(range(s * self.count // p, (s + 1) * self.count // p))
        else:
            indices = _count_from(s, p)
        rate = self.rate / p if self.rate is not None else None
        return _GeneratorReader(self.fn, indices, rate, context.batch_size)


def _count_from(start: int, step: int) -> Iterator[int]:
    i = start
    while True:
        yield i
        i += step


class _GeneratorReader(SourceReader[T]):
    def __init__(
        self, fn: Callable[[int], Any], indices: Iterator[int], rate: float | None, batch_size: int
    ) -> None:
        self.fn = fn
        self.is_async = is_async_callable(fn)
        self.indices = indices
        self.rate = rate
        self.batch_size = batch_size
        self.emitted = 0
        self.started = 0.0

    async def start(self) -> None:
        self.started = asyncio.get_running_loop().time()

    def _allowed(self) -> int:
        if self.rate is None:
            return self.batch_size
        elapsed = asyncio.get_running_loop().time() - self.started
        return min(self.batch_size, int(elapsed * self.rate) + 1 - self.emitted)

    async def poll_next(self, output: ReaderOutput[T]) -> InputStatus:
        n = self._allowed()
        if n <= 0:
            return NOTHING
        idx = list(islice(self.indices, n))
        if self.is_async:
            fn = self.fn
            batch = [await fn(i) for i in idx]
        else:
            batch = list(map(self.fn, idx))
        self.emitted += len(idx)
        if batch:
            await output.collect_batch(batch)
        return MORE if len(idx) == n else END

    async def is_available(self) -> None:
        assert self.rate is not None
        due = self.started + (self.emitted / self.rate)
        await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))


# -- files -------------------------------------------------------------------


def _list_files(path: str | os.PathLike[str]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {str(p)!r}")
    return [p]


class _LineReader(SourceReader[T]):
    """Reads files in large chunks and hands out complete lines with their numbers."""

    chunk_size = 1 << 20

    def __init__(self, files: list[Path], batch_size: int) -> None:
        self.files = files
        self.batch_size = batch_size
        self.file_index = -1
        self.handle: Any = None
        self.carry = b""
        self.line_no = 0
        self.pending: list[bytes] = []
        self.pending_pos = 0
        self.eof = True

    @property
    def current(self) -> str:
        return str(self.files[self.file_index])

    async def _next_lines(self) -> tuple[int, list[bytes]] | None:
        """Up to ``batch_size`` lines of the current file and the number of the first."""
        while True:
            if self.pending_pos < len(self.pending):
                lines = self.pending[self.pending_pos : self.pending_pos + self.batch_size]
                first = self.line_no + 1
                self.pending_pos += len(lines)
                self.line_no += len(lines)
                return first, lines
            if self.eof:
                if self.handle is not None:
                    await self.handle.close()
                    self.handle = None
                self.file_index += 1
                if self.file_index >= len(self.files):
                    return None
                self.handle = await aiofiles.open(self.files[self.file_index], "rb")
                self.eof = False
                self.line_no = 0
                self.carry = b""
            chunk = await self.handle.read(self.chunk_size)
            if not chunk:
                self.eof = True
                self.pending = [self.carry] if self.carry else []
                self.carry = b""
            else:
                parts = (self.carry + chunk).split(b"\n")
                self.carry = parts.pop()
                self.pending = parts
            self.pending_pos = 0

    async def close(self) -> None:
        if self.handle is not None:
            await self.handle.close()
            self.handle = None


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


class TextFileSource(Source[str]):
    """Lines of a file, or of every file in a directory (one file per subtask at a time)."""

    def __init__(self, path: str | os.PathLike[str], encoding: str = "utf-8") -> None:
        self.path = path
        self.encoding = encoding
        self.files = _list_files(path)

    def create_reader(self, context: SourceReaderContext) -> SourceReader[str]:
        mine = self.files[context.subtask_index :: context.parallelism]
        return _TextReader(mine, context.batch_size, self.encoding)


class _TextReader(_LineReader[str]):
    def __init__(self, files: list[Path], batch_size: int, encoding: str) -> None:
        super().__init__(files, batch_size)
        self.encoding = encoding

    async def poll_next(self, output: ReaderOutput[str]) -> InputStatus:
        got = await self._next_lines()
        if got is None:
            return END
        first, lines = got
        try:
            batch = [_strip_cr(line).decode(self.encoding) for line in lines]
        except UnicodeDecodeError as exc:
            for i, line in enumerate(lines):
                try:
                    line.decode(self.encoding)
                except UnicodeDecodeError:
                    raise MalformedRecordError(
                        f"{self.current}:{first + i}: not valid {self.encoding}: {exc.reason}",
                        source=self.current,
                        position=first + i,
                        raw=line,
                    ) from exc
            raise
        await output.collect_batch(batch)
        return MORE


class JsonLinesSource(Source[Any]):
    """One JSON value per line (blank lines skipped), decoded with orjson.

    A line that is not valid JSON fails the job with a
    :class:`~flowactors.errors.MalformedRecordError` naming the file and the
    line — or, with ``bad_lines=OutputTag(...)``, goes to that side output as a
    :class:`MalformedRecord` and the job goes on.
    """

    def __init__(self, path: str | os.PathLike[str], bad_lines: Any = None) -> None:
        self.path = path
        self.bad_lines = bad_lines
        self.files = _list_files(path)

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        mine = self.files[context.subtask_index :: context.parallelism]
        return _JsonLinesReader(mine, context.batch_size, self.bad_lines)


class _JsonLinesReader(_LineReader[Any]):
    def __init__(self, files: list[Path], batch_size: int, bad_lines: Any) -> None:
        super().__init__(files, batch_size)
        self.bad_lines = bad_lines

    async def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        got = await self._next_lines()
        if got is None:
            return END
        first, lines = got
        loads = orjson.loads
        try:
            batch = [loads(line) for line in lines if line.strip()]
        except orjson.JSONDecodeError:
            batch = self._decode_carefully(first, lines, output)
        if batch:
            await output.collect_batch(batch)
        return MORE

    def _decode_carefully(
        self, first: int, lines: list[bytes], output: ReaderOutput[Any]
    ) -> list[Any]:
        batch = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                batch.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                where = f"{self.current}:{first + i}"
                if self.bad_lines is None:
                    raise MalformedRecordError(
                        f"{where}: malformed JSON: {exc}",
                        source=self.current,
                        position=first + i,
                        raw=line,
                    ) from None
                output.emit_side_output(
                    self.bad_lines, MalformedRecord(self.current, first + i, line, str(exc))
                )
        return batch
