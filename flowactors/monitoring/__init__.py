"""Operating a running job: Prometheus metrics, health and readiness, a web view.

>>> from flowactors import monitoring
>>> server = monitoring.MonitoringServer(client)        # doctest: +SKIP
>>> await server.start()                                # doctest: +SKIP

Or mount the same endpoints into a service's own app:
``app.add_routes(monitoring.aiohttp_routes(client))`` (aiohttp) or
``monitoring.asgi_app(client)`` (any ASGI server). All of them take a
scaled-out job's client too (this replica's tasks). ``JobCollector`` adds a
job's metric families to any ``prometheus_client`` registry
(``JobCollector(monitor_for(client))``); source readers
report consumer lag through their context (``SourceReaderContext.metrics``).
"""

from flowactors.monitoring._endpoints import job_json
from flowactors.monitoring._introspect import JobMonitor
from flowactors.monitoring._metrics import JobCollector
from flowactors.monitoring._scaleout import ScaleOutMonitor, monitor_for
from flowactors.monitoring._server import MonitoringServer, aiohttp_routes, asgi_app

__all__ = [
    "JobCollector",
    "JobMonitor",
    "MonitoringServer",
    "ScaleOutMonitor",
    "aiohttp_routes",
    "asgi_app",
    "job_json",
    "monitor_for",
]
