"""Keys to key groups to subtasks, the same in every process.

A key's *key group* is a stable hash of its canonical bytes modulo
``max_parallelism``; key groups are handed to subtasks in contiguous ranges
(Flink's ``KeyGroupRangeAssignment``). State is snapshotted per key group, so a
job can resume at another parallelism by handing ranges to new owners.

Python's ``hash()`` of ``str`` and ``bytes`` is salted per process
(``PYTHONHASHSEED``), so it is never used here: the canonical bytes of a key
depend only on its value.
"""

from __future__ import annotations

import dataclasses
import enum
import pickle
import struct
import zlib
from collections.abc import Callable, Hashable
from typing import Any

from flowactors.errors import InvalidKeyError

DEFAULT_MAX_PARALLELISM = 128

_pack_double = struct.Struct("<d").pack


def key_bytes(key: Any) -> bytes:
    """Canonical bytes of ``key``: equal keys give equal bytes in every process.

    Keys that Python treats as equal (``1``, ``1.0``, ``True``; a named tuple
    and the plain tuple of its fields; a ``StrEnum`` member and its string) get
    the same bytes, so they land in the same key group whichever is seen first.
    """
    if isinstance(key, str):
        return b"s" + str.__str__(key).encode("utf-8", "surrogatepass")
    if isinstance(key, int):
        as_int: int = int(key)
        return b"i" + as_int.to_bytes(as_int.bit_length() // 8 + 1, "little", signed=True)
    if isinstance(key, bytes):
        return b"b" + bytes(key)
    if isinstance(key, tuple):
        parts = [key_bytes(part) for part in key]
        return b"t" + b"".join(len(p).to_bytes(4, "little") + p for p in parts)
    if isinstance(key, float):
        if key.is_integer():
            return key_bytes(int(key))
        return b"f" + _pack_double(key)
    if key is None:
        return b"N"
    if isinstance(key, frozenset):
        parts = sorted(key_bytes(part) for part in key)
        return b"z" + b"".join(len(p).to_bytes(4, "little") + p for p in parts)
    if not isinstance(key, Hashable):
        raise InvalidKeyError(f"unhashable key of type {type(key).__name__}: {key!r:.200}")
    kind = type(key)
    name = f"{kind.__module__}.{kind.__qualname__}".encode()
    if isinstance(key, enum.Enum):
        return b"e" + name + key_bytes(key.value)
    if dataclasses.is_dataclass(key):
        fields = tuple(getattr(key, f.name) for f in dataclasses.fields(key))
        return b"d" + name + key_bytes(fields)
    # Other value objects: pickle records the class and the state, which is
    # deterministic across processes for objects whose state is.
    try:
        return b"p" + pickle.dumps(key, protocol=5)
    except Exception as exc:
        raise InvalidKeyError(
            f"cannot derive stable bytes for a key of type {kind.__name__} ({exc}); "
            "use a str, int, tuple, enum or dataclass as key"
        ) from exc


def _mix(h: int) -> int:
    """Murmur3's 32-bit finaliser: spreads crc32's bits over the range."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def key_group_for(key: Any, max_parallelism: int) -> int:
    """The key group (``0 <= g < max_parallelism``) that owns ``key``."""
    return _mix(zlib.crc32(key_bytes(key))) % max_parallelism


def operator_index_for_key_group(max_parallelism: int, parallelism: int, key_group: int) -> int:
    """The subtask that owns ``key_group`` when running at ``parallelism``."""
    return key_group * parallelism // max_parallelism


def key_group_range(max_parallelism: int, parallelism: int, index: int) -> range:
    """The contiguous key groups subtask ``index`` owns (inverse of the function above)."""
    start = (index * max_parallelism + parallelism - 1) // parallelism
    end = ((index + 1) * max_parallelism - 1) // parallelism
    return range(start, end + 1)


class KeyRouter:
    """Maps keys to target subtasks through a cache filled on first sight of a key.

    :meth:`route` is one C-level lookup per key in a plain ``dict`` (cheaper
    than a ``dict`` subclass with ``__missing__``); only a batch with a key
    never seen before takes the slow path that hashes canonical bytes. The
    cache is emptied when it grows past ``limit`` entries, which bounds its
    memory for key spaces larger than that.
    """

    def __init__(self, max_parallelism: int, parallelism: int, limit: int = 1 << 18) -> None:
        self.max_parallelism = max_parallelism
        self.parallelism = parallelism
        self.limit = limit
        self.cache: dict[Any, int] = {}

    def target(self, key: Any) -> int:
        """The subtask for ``key`` (and remember it)."""
        cache = self.cache
        found = cache.get(key)
        if found is not None:
            return found
        target = (
            (_mix(zlib.crc32(key_bytes(key))) % self.max_parallelism)
            * self.parallelism
            // self.max_parallelism
        )
        if len(cache) >= self.limit:
            cache.clear()
        cache[key] = target
        return target

    def route(self, keys: list[Any]) -> list[int]:
        """The target subtask of every key (raises ``TypeError`` for an unhashable one)."""
        try:
            return list(map(self.cache.__getitem__, keys))
        except KeyError:
            return list(map(self.target, keys))

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, key: Any) -> int:
        return self.target(key)


def check_keys(keys: list[Any], key_selector: Callable[[Any], Any], operator: str) -> None:
    """Raise :class:`InvalidKeyError` naming the first unhashable key in ``keys``."""
    for key in keys:
        try:
            hash(key)
        except TypeError:
            raise InvalidKeyError(
                f"the key selector {_describe(key_selector)} of {operator!r} returned an "
                f"unhashable value of type {type(key).__name__}: {key!r:.200}; "
                "keys must be hashable (use a tuple instead of a list)"
            ) from None


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__
