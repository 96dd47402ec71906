"""Log records that say where they come from: ``job``, ``operator`` and ``subtask``.

:class:`TaskContextFilter` fills these three attributes on every record it
sees (as ``extra`` fields would), from the asyncio task that logs: the runtime
names each task ``flowactors:<job>:<operator>#<subtask>``, so user functions
and operators need no logger of their own. Fields given explicitly with
``extra=`` win; records logged outside a job's tasks get ``None``. A job name
containing ``:`` is cut at its first ``:``.

:class:`JsonFormatter` writes one JSON object per record, with these fields
and any other ``extra`` ones. Both are opt-in::

    handler = logging.StreamHandler()
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)

(``flowactors run --log-format json`` does exactly this.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

FIELDS = ("job", "operator", "subtask")

_PREFIX = "flowactors:"
#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def task_context(name: str) -> tuple[str | None, str | None, int | None]:
    """``(job, operator, subtask)`` from a runtime task's name.

    >>> task_context("flowactors:orders:Sums -> Keep#3")
    ('orders', 'Sums -> Keep', 3)
    >>> task_context("flowactors:orders:checkpoint-coordinator")
    ('orders', None, None)
    >>> task_context("flowactors:snapshot:Sums#1:42")
    (None, 'Sums', 1)
    >>> task_context("Task-1")
    (None, None, None)
    """
    if not name.startswith(_PREFIX):
        return None, None, None
    rest = name[len(_PREFIX) :]
    if rest.startswith("snapshot:"):  # snapshot writers: snapshot:<operator>#<subtask>:<id>
        operator, _, tail = rest[len("snapshot:") :].rpartition("#")
        subtask = tail.partition(":")[0]
        return None, operator or None, int(subtask) if subtask.isdigit() else None
    job, _, what = rest.partition(":")
    operator, sep, subtask = what.rpartition("#")
    if not sep or not subtask.isdigit():
        return job or None, None, None
    return job or None, operator, int(subtask)


class TaskContextFilter(logging.Filter):
    """Adds ``job``, ``operator`` and ``subtask`` to records (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop in this thread
            task = None
        context = task_context(task.get_name()) if task is not None else (None, None, None)
        for name, value in zip(FIELDS, context):
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, job, operator,
    subtask, other ``extra`` fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            data[name] = getattr(record, name, None)
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in data:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=repr)
