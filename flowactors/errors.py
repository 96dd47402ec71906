"""The exceptions flowactors raises, in one tree.

::

    FlowactorsError
    ├── InvalidGraphError         the program is wrong; raised before anything runs
    ├── JobFailedError            a running job failed (names operator, subtask, cause)
    ├── JobCancelledError         the job was cancelled before it finished
    ├── InvalidKeyError           a key function returned a value that cannot be a key
    ├── MalformedRecordError      a source met input it cannot decode (names where)
    ├── ConnectorError            an external system failed; ``retriable=False`` when
    │                             no retry can fix it (wrong credentials, TLS trust)
    ├── CheckpointError           a checkpoint/savepoint could not be written, found
    │   │                         or restored
    │   ├── CorruptCheckpointError  its files do not match their checksums
    │   ├── NoValidCheckpointError  snapshots exist, none verifies: refusing to
    │   │                         start empty (names each and why)
    │   └── IncompatibleSnapshotError  (also an InvalidGraphError) the job no longer
    │                             matches the snapshot it would restore
    └── StateError                state used in a way that cannot work

``JobFailedError`` is what ``execute()`` raises; the exception that broke the
operator is its ``__cause__`` (and ``cause``), so ``except ZeroDivisionError``
style handling works through ``err.cause``.

Restarts: a failed job runs again under its restart strategy unless the error
says that no retry can fix it (:func:`is_retriable` is false: a
``ConnectorError(retriable=False)``, an invalid graph). Then the job fails at
once, and the error's message says what to fix.
"""

from __future__ import annotations


class FlowactorsError(Exception):
    """Root of every exception flowactors raises on its own account."""


class InvalidGraphError(FlowactorsError, ValueError):
    """The job graph is not valid (bad parallelism, unknown uid, misuse of an API)."""

    retriable = False


class InvalidKeyError(FlowactorsError, TypeError):
    """A key selector returned a value that cannot serve as a key (e.g. unhashable)."""


class MalformedRecordError(FlowactorsError, ValueError):
    """A source could not decode a record; ``source`` and ``position`` say where."""

    def __init__(self, message: str, *, source: str, position: object, raw: bytes | str) -> None:
        super().__init__(message)
        self.source = source
        self.position = position
        self.raw = raw


class ConnectorError(FlowactorsError):
    """An external system (broker, file system) failed.

    ``retriable`` (the default) if trying again may help; ``False`` when nothing but a
    change of configuration can (wrong credentials, an untrusted certificate): the job
    then fails at once instead of restarting.
    """

    retriable: bool = True

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class CheckpointError(FlowactorsError):
    """A checkpoint or savepoint could not be written, found, or restored."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files do not match what its metadata recorded."""


class NoValidCheckpointError(CheckpointError):
    """A job has complete snapshots but none verifies; ``failures`` holds each
    one's directory and what is wrong with it. Starting empty would commit again the
    output they covered, so the job does not start (and no restart retries)."""

    retriable = False

    def __init__(self, message: str, failures: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.failures = failures


class IncompatibleSnapshotError(InvalidGraphError, CheckpointError):
    """The snapshot a job would restore does not fit the job: state of operators it
    lacks, another max parallelism, another kind of state. Never retriable: only a
    change of the job (or ``allow_non_restored_state=True``) gets past it."""


class StateError(FlowactorsError):
    """State was used in a way that cannot work (e.g. one name with two kinds)."""


class JobCancelledError(FlowactorsError):
    """The job was cancelled (``JobClient.cancel()``) before it finished."""


class JobFailedError(FlowactorsError):
    """A job failed. ``operator`` and ``subtask`` name where; ``cause`` is the original error."""

    def __init__(
        self,
        job_name: str,
        operator: str,
        subtask: int,
        cause: BaseException,
        *,
        attempts: int = 1,
    ) -> None:
        self.job_name = job_name
        self.operator = operator
        self.subtask = subtask
        self.cause = cause
        self.attempts = attempts
        super().__init__(
            f"job {job_name!r} failed in operator {operator!r} (subtask {subtask}): "
            f"{type(cause).__name__}: {cause}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _restore_job_failed,
            (self.job_name, self.operator, self.subtask, self.cause, self.attempts, self.args),
        )


def is_retriable(error: BaseException) -> bool:
    """Whether running the job again may get past ``error`` (most errors: yes)."""
    return bool(getattr(error, "retriable", True))


def _restore_job_failed(
    job_name: str,
    operator: str,
    subtask: int,
    cause: BaseException,
    attempts: int,
    args: tuple[object, ...],
) -> JobFailedError:
    error = JobFailedError(job_name, operator, subtask, cause, attempts=attempts)
    error.args = args
    return error


__all__ = [
    "CheckpointError",
    "ConnectorError",
    "CorruptCheckpointError",
    "FlowactorsError",
    "IncompatibleSnapshotError",
    "InvalidGraphError",
    "InvalidKeyError",
    "JobCancelledError",
    "JobFailedError",
    "MalformedRecordError",
    "NoValidCheckpointError",
    "StateError",
    "is_retriable",
]
