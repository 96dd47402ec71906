"""A task's event time, committed with its input offset so that it survives a move.

Kafka Streams keeps a task's stream time in the metadata string of its offset commit;
a task here keeps its event time there, in the same transaction as its outputs, its
watermark markers and its state changes:

- ``hops``: the watermark each hop writer last took (by topic and input index), so
  that the markers of a new owner never go below what downstream tasks were sent;
- ``emitted``: the watermark the task's reader last emitted into its chain (tasks that
  read an internal topic), and what it knew of its upstream tasks (their newest
  watermark, whether idle), so that a new owner starts its chain and its "valve"
  there instead of at the beginning of time;
- ``sinks``: the watermark that reached the task's user Kafka sinks, the chain's event
  time where nothing else records it (a source stage writing straight to a sink, e.g.
  after ``reinterpret_as_keyed``: its windows must not fire twice after a move).

A new owner emits the largest of these into its chain before its first record, and
its generators and valve only go up from there: event time is monotonic across
failover, for the task itself and for every task downstream of it.

The string is compact JSON. Brokers cap offset metadata (``offset.metadata.max.bytes``,
4096 by default), so beyond 1 KB the upstream knowledge is left out: a new
owner then waits for a marker of every upstream task (they repeat every second)
before it moves event time on, which is slower but as monotonic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: Offset metadata longer than this leaves out the upstream tasks' watermarks (a quarter
#: of the broker's default cap, so that brokers configured lower take it too; about 40
#: upstream tasks fit).
_MAX_METADATA = 1024

Upstream = tuple[str, int]


@dataclass
class TaskEventTime:
    """What a task committed of its event time (see the module docstring)."""

    hops: dict[str, int] = field(default_factory=dict)
    emitted: int | None = None
    upstream_watermarks: dict[Upstream, int] = field(default_factory=dict)
    upstream_idle: set[Upstream] = field(default_factory=set)
    sinks: int | None = None

    @property
    def watermark(self) -> int | None:
        """Where a new owner's chain starts: the highest event time the task passed on."""
        known = [*self.hops.values(), *(w for w in (self.emitted, self.sinks) if w is not None)]
        return max(known) if known else None

    def encode(self) -> str:
        if not self.hops and self.emitted is None and self.sinks is None:
            return ""
        doc: dict[str, Any] = {"h": self.hops}
        if self.emitted is not None:
            doc["e"] = self.emitted
        if self.sinks is not None:
            doc["s"] = self.sinks
        full = {
            **doc,
            "u": [[s, p, w] for (s, p), w in sorted(self.upstream_watermarks.items())],
            "i": [[s, p] for s, p in sorted(self.upstream_idle)],
        }
        text = json.dumps(full, separators=(",", ":"))
        if len(text) > _MAX_METADATA:
            text = json.dumps(doc, separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, text: str) -> TaskEventTime:
        """What :meth:`encode` wrote; an empty or foreign string is no event time."""
        try:
            doc = json.loads(text) if text else {}
        except ValueError:
            return cls()
        if not isinstance(doc, dict):
            return cls()
        return cls(
            hops={str(k): int(v) for k, v in doc.get("h", {}).items()},
            emitted=None if doc.get("e") is None else int(doc["e"]),
            sinks=None if doc.get("s") is None else int(doc["s"]),
            upstream_watermarks={(str(s), int(p)): int(w) for s, p, w in doc.get("u", [])},
            upstream_idle={(str(s), int(p)) for s, p in doc.get("i", [])},
        )
