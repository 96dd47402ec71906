"""Keeping long-lived state out of the garbage collector's way.

CPython's cycle collector examines every tracked container of the generation
it collects; a full (generation 2) collection examines them all. Keyed state
(window contents, timers, the tuples that key them) is exactly such
containers, so with state in memory every full collection pauses the event
loop for time proportional to the state: measured with 200,000 windows, the
automatic full collections took up to 280 ms each (see docs/performance.md).

When the first job of the process starts, what exists then (the service's
modules and long-lived objects, input the program holds) is frozen; while a
job runs, every object that survived a full collection is moved to the
permanent generation (``gc.freeze()`` in a ``gc.callbacks`` hook right
after the collection): it has proven long-lived, and the cycles that were
garbage at that moment have just been collected, so nothing dead is frozen.
Later full collections only examine what was allocated since (measured: at
most 6-11 ms with the same state). A restored state is frozen right after the
restore. When the last running task of the process ends, everything is
unfrozen again, so cycles that became garbage while frozen are collected by
the next full collection. Objects freed by reference counting (almost all
state, which holds no cycles) are freed as usual, frozen or not.

Turned off per job with ``ExecutionConfig(freeze_long_lived_objects=False)``.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["freeze_now", "hold", "release"]

_holders = 0


def _after_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def hold() -> None:
    """A task starts: freeze survivors of full collections from now on."""
    global _holders
    if _holders == 0:
        gc.freeze()
        gc.callbacks.append(_after_collection)
    _holders += 1


def release() -> None:
    """A task ended: when it was the last, stop freezing and unfreeze everything."""
    global _holders
    _holders -= 1
    if _holders == 0:
        gc.callbacks.remove(_after_collection)
        gc.unfreeze()


def freeze_now() -> None:
    """Freeze what exists now (right after a restore: the restored state)."""
    gc.freeze()
