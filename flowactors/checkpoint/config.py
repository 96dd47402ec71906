"""Checkpointing and restart settings (``enable_checkpointing``, ``set_restart_strategy``)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from flowactors.errors import InvalidGraphError
from flowactors.time import to_millis


@dataclass(frozen=True)
class Serializer:
    """How state values become bytes in snapshots. The default is pickle.

    Unpickling runs code chosen by whoever wrote the bytes: checkpoint storage
    must be as trusted as the job's own code. Restore reads only from the
    configured storage and verifies every file's checksum first.
    """

    dumps: Callable[[Any], bytes] = field(default=lambda obj: pickle.dumps(obj, protocol=5))
    loads: Callable[[bytes], Any] = field(default=pickle.loads)


PICKLE = Serializer()


#: Where a job starts when its checkpoint storage already holds snapshots of it:
#: ``"latest"`` the newest that verifies (refusing to start when some exist and none
#: does), ``"latest-or-empty"`` the same but starting empty then, ``"none"`` empty.
Resume = Literal["latest", "latest-or-empty", "none"]
RESUME_CHOICES: tuple[Resume, ...] = ("latest", "latest-or-empty", "none")


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """When and how checkpoints are taken (immutable; validated when made).

    - ``interval_ms``: time between the start of two checkpoints (>= 10).
    - ``storage``: the directory checkpoints are written to.
    - ``timeout_ms``: a checkpoint not complete by then is aborted.
    - ``min_pause_ms``: at least this long between the end of one and the start of the next.
    - ``max_concurrent``: checkpoints in flight at once.
    - ``tolerable_failures``: consecutive failed checkpoints before the job fails.
    - ``retained``: complete checkpoints kept on disk (older ones are deleted).
    - ``resume``: ``"latest"`` resumes a job from the newest complete checkpoint (or
      savepoint it took) of the same job name found in ``storage``, and refuses to
      start when there are some but none verifies; ``"latest-or-empty"`` starts with
      empty state then instead; ``"none"`` starts fresh.
    - ``serializer``: how state becomes bytes (pickle by default).
    """

    interval_ms: int
    storage: Path
    timeout_ms: int = 600_000
    min_pause_ms: int = 0
    max_concurrent: int = 1
    tolerable_failures: int = 0
    retained: int = 3
    resume: Resume = "latest"
    serializer: Serializer = PICKLE

    def __post_init__(self) -> None:
        if self.interval_ms < 10:
            raise InvalidGraphError(f"checkpoint interval must be >= 10 ms, got {self.interval_ms}")
        if self.timeout_ms < 1:
            raise InvalidGraphError(f"checkpoint timeout must be >= 1 ms, got {self.timeout_ms}")
        if self.min_pause_ms < 0:
            raise InvalidGraphError(f"min pause must be >= 0 ms, got {self.min_pause_ms}")
        if self.resume not in RESUME_CHOICES:
            choices = ", ".join(repr(c) for c in RESUME_CHOICES)
            raise InvalidGraphError(f"resume must be one of {choices}, got {self.resume!r}")
        if self.max_concurrent < 1:
            raise InvalidGraphError(
                f"max concurrent checkpoints must be >= 1, got {self.max_concurrent}"
            )
        if self.retained < 1:
            raise InvalidGraphError(f"retained checkpoints must be >= 1, got {self.retained}")
        if self.tolerable_failures < 0:
            raise InvalidGraphError(
                f"tolerable checkpoint failures must be >= 0, got {self.tolerable_failures}"
            )


def storage_path(storage: str | os.PathLike[str]) -> Path:
    text = os.fspath(storage)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise InvalidGraphError(f"only local file system storage is supported, got {text!r}")
    return Path(text)


class RestartStrategy:
    """Whether (and when) a failed job runs again from its last checkpoint."""

    def next_delay_ms(self, failures: list[float], now: float) -> int | None:
        """Delay before the next attempt, or ``None`` to give up.

        ``failures`` are the times (monotonic seconds) of every failure so far,
        the latest last.
        """
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class NoRestart(RestartStrategy):
    def next_delay_ms(self, failures: list[float], now: float) -> int | None:
        return None

    def describe(self) -> str:
        return "no restarts"


@dataclass
class FixedDelayRestart(RestartStrategy):
    attempts: int
    delay_ms: int

    def next_delay_ms(self, failures: list[float], now: float) -> int | None:
        return self.delay_ms if len(failures) <= self.attempts else None

    def describe(self) -> str:
        return f"fixed delay: at most {self.attempts} restarts, {self.delay_ms} ms apart"


@dataclass
class ExponentialDelayRestart(RestartStrategy):
    initial_ms: int
    max_ms: int
    multiplier: float = 2.0
    attempts: int | None = None
    #: A failure this long after the previous one starts the backoff afresh.
    reset_after_ms: int | None = None

    def next_delay_ms(self, failures: list[float], now: float) -> int | None:
        if self.attempts is not None and len(failures) > self.attempts:
            return None
        streak = 1
        if self.reset_after_ms is not None:
            for earlier, later in zip(reversed(failures[:-1]), reversed(failures[1:])):
                if (later - earlier) * 1000 >= self.reset_after_ms:
                    break
                streak += 1
        else:
            streak = len(failures)
        return int(min(self.max_ms, self.initial_ms * self.multiplier ** (streak - 1)))

    def describe(self) -> str:
        limit = "unlimited" if self.attempts is None else f"at most {self.attempts}"
        return f"exponential delay ({self.initial_ms}..{self.max_ms} ms, {limit} restarts)"


@dataclass
class FailureRateRestart(RestartStrategy):
    max_failures: int
    interval_ms: int
    delay_ms: int

    def next_delay_ms(self, failures: list[float], now: float) -> int | None:
        recent = [t for t in failures if (now - t) * 1000 <= self.interval_ms]
        return self.delay_ms if len(recent) <= self.max_failures else None

    def describe(self) -> str:
        return (
            f"failure rate: at most {self.max_failures} failures per {self.interval_ms} ms, "
            f"{self.delay_ms} ms apart"
        )


class RestartStrategies:
    """Factories, as Flink names them."""

    @staticmethod
    def no_restart() -> RestartStrategy:
        return NoRestart()

    @staticmethod
    def fixed_delay(attempts: int, delay: timedelta | int) -> RestartStrategy:
        return FixedDelayRestart(attempts, to_millis(delay))

    @staticmethod
    def exponential_delay(
        initial: timedelta | int,
        max_delay: timedelta | int,
        multiplier: float = 2.0,
        attempts: int | None = None,
        reset_after: timedelta | int | None = None,
    ) -> RestartStrategy:
        return ExponentialDelayRestart(
            to_millis(initial),
            to_millis(max_delay),
            multiplier,
            attempts,
            None if reset_after is None else to_millis(reset_after),
        )

    @staticmethod
    def failure_rate(
        max_failures: int, interval: timedelta | int, delay: timedelta | int
    ) -> RestartStrategy:
        return FailureRateRestart(max_failures, to_millis(interval), to_millis(delay))
