"""Validation helpers shared by the source's and the sink's keyword constructors.

Each turns one user argument into the value the connector keeps, or raises a ``ValueError``
(``TypeError`` for a wrong type) whose message names the argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta


def servers(value: str | Sequence[str]) -> str:
    """``"host:port,host:port"`` from a string or a list of ``host:port`` strings."""
    if isinstance(value, str):
        joined = value.strip()
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        joined = ",".join(v.strip() for v in value)
    else:
        raise TypeError(f"bootstrap_servers must be a string or a list of strings, got {value!r}")
    if not joined or any(not part for part in joined.split(",")):
        raise ValueError(f"bootstrap_servers must name at least one host:port, got {value!r}")
    return joined


def millis(value: timedelta | int, name: str, *, minimum: int = 0) -> int:
    """A duration in whole milliseconds from a ``timedelta`` or an ``int`` of milliseconds."""
    if isinstance(value, timedelta):
        ms = int(value.total_seconds() * 1000)
    elif isinstance(value, int) and not isinstance(value, bool):
        ms = value
    else:
        raise TypeError(
            f"{name} must be a datetime.timedelta or an int of milliseconds, got {value!r}"
        )
    if ms < minimum:
        raise ValueError(f"{name} must be at least {minimum} ms, got {ms} ms")
    return ms


def name(value: str, what: str) -> str:
    """A non-empty name without whitespace (topics, prefixes, group ids)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {value!r}")
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} must be a non-empty name without whitespace, got {value!r}")
    return value
