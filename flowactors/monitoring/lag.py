"""Consumer lag: how far a source's readers are behind the end of their partitions.

A source reader that knows its lag reports it here, and the monitor exports it
as ``flowactors_consumer_lag_records{job, operator, subtask, topic, partition}``::

    from flowactors.monitoring.lag import clear_consumer_lag, report_consumer_lag

    class Reader(SourceReader[bytes]):
        def __init__(self, context: SourceReaderContext) -> None:
            self.context = context

        async def poll_next(self, output):
            ...
            report_consumer_lag(self.context, "rides", 0, high_watermark - position)

        async def close(self):
            clear_consumer_lag(self.context)

Reporting is one dict assignment, cheap enough per polled batch. Values are
kept per job name until the reader clears them; two jobs of the same name in
one process share them.
"""

from __future__ import annotations

from flowactors.spi import SourceReaderContext

#: ``(source name, subtask, topic, partition) -> lag`` per job name.
_LAGS: dict[str, dict[tuple[str, int, str, int], int]] = {}


def report_consumer_lag(context: SourceReaderContext, topic: str, partition: int, lag: int) -> None:
    """Record that the reader of ``context`` is ``lag`` records behind in a partition."""
    key = (context.source_name, context.subtask_index, topic, partition)
    _LAGS.setdefault(context.job_name, {})[key] = max(0, int(lag))


def clear_consumer_lag(context: SourceReaderContext) -> None:
    """Forget what the reader of ``context`` reported (it closed, or lost its partitions)."""
    lags = _LAGS.get(context.job_name)
    if lags is None:
        return
    for key in [k for k in lags if k[0] == context.source_name and k[1] == context.subtask_index]:
        del lags[key]
    if not lags:
        del _LAGS[context.job_name]


def consumer_lags(job_name: str) -> dict[tuple[str, int, str, int], int]:
    """What the readers of ``job_name`` reported: ``(source, subtask, topic, partition) -> lag``."""
    return dict(_LAGS.get(job_name, {}))
