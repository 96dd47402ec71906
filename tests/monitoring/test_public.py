"""The public surface of flowactors.monitoring."""

import flowactors.monitoring as monitoring


def test_all_is_the_curated_surface() -> None:
    assert sorted(monitoring.__all__) == [
        "JobCollector",
        "JobMonitor",
        "MonitoringServer",
        "ScaleOutMonitor",
        "aiohttp_routes",
        "asgi_app",
        "job_json",
        "monitor_for",
    ]
    for name in monitoring.__all__:
        assert getattr(monitoring, name).__module__.startswith("flowactors.monitoring")
