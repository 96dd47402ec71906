"""Operating a running job: Prometheus metrics, health and readiness, a web view.

>>> from flowactors import monitoring
>>> server = monitoring.MonitoringServer(client)        # doctest: +SKIP
>>> await server.start()                                # doctest: +SKIP

Or mount the same endpoints into a service's own app:
``app.add_routes(monitoring.aiohttp_routes(client))`` (aiohttp) or
``monitoring.asgi_app(client)`` (any ASGI server). ``JobCollector`` adds a
job's metric families to any ``prometheus_client`` registry; source readers
report consumer lag through :mod:`flowactors.monitoring.lag`.
"""

from flowactors.monitoring._endpoints import job_json
from flowactors.monitoring._introspect import JobMonitor
from flowactors.monitoring._metrics import JobCollector
from flowactors.monitoring._server import MonitoringServer, aiohttp_routes, asgi_app
from flowactors.monitoring.lag import clear_consumer_lag, report_consumer_lag

__all__ = [
    "JobCollector",
    "JobMonitor",
    "MonitoringServer",
    "aiohttp_routes",
    "asgi_app",
    "clear_consumer_lag",
    "job_json",
    "report_consumer_lag",
]
