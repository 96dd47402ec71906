"""Scale-out on Kafka: replicas of a service share one job (``env.enable_scale_out``).

flowactors finds this backend through the ``flowactors.scale_out`` entry point that
this distribution registers; see ``docs/scaleout.md`` for the design.
"""

from __future__ import annotations

from typing import Any

from flowactors.spi import ScaleOutJob, ScaleOutSettings, Source
from flowactors_kafka._scaleout._worker import KafkaScaleOutWorker
from flowactors_kafka._source import KafkaSource


class KafkaScaleOutBackend:
    """A :class:`flowactors.spi.ScaleOutBackend` on Kafka's consumer groups and transactions."""

    def can_read(self, source: Source[Any]) -> bool:
        return isinstance(source, KafkaSource)

    def create_worker(self, settings: ScaleOutSettings, job: ScaleOutJob) -> KafkaScaleOutWorker:
        return KafkaScaleOutWorker(settings, job)


__all__ = ["KafkaScaleOutBackend"]
