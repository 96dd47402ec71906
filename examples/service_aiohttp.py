"""An aiohttp service that runs a flowactors job on its own event loop.

    SERVICE_STATE=/tmp/counts python -m examples.service_aiohttp --port 8080
    curl localhost:8080/counts/key-3        # {"key": "key-3", "count": 1234}

The job lives exactly as long as the app: ``cleanup_ctx`` starts it before the
app serves and, on shutdown (SIGTERM or Ctrl-C: ``web.run_app`` turns both into
a graceful exit), stops it with a savepoint that the next start resumes from.
Handlers read the job's keyed state live (``client.keyed_state``): right after a
restart they answer with the restored counts, before any new event arrives.

Replicas of it share one job instead of each counting every event (see
``examples/service_job.py``)::

    SERVICE_KAFKA=localhost:9092 SERVICE_TOPIC=events SERVICE_OUTPUT_TOPIC=counts \
    SERVICE_APPLICATION_ID=counts python -m examples.service_aiohttp --port 8081
    # the same with --port 8082 (and examples.service_asgi alike): /healthz lists the
    # tasks each replica owns; SIGTERM one and the others take its tasks over
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from aiohttp import web

from examples.service_job import (
    SPREAD_OVER_REPLICAS,
    counts,
    report_leftover_tasks,
    start_job,
    state_dir,
    stop_job,
)
from flowactors import JobClient

CLIENT = web.AppKey("client", JobClient)


async def flowactors_job(app: web.Application) -> AsyncIterator[None]:
    state = state_dir()
    client = await start_job(state)
    app[CLIENT] = client
    yield
    await stop_job(client, state)
    report_leftover_tasks()


async def get_count(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    view = counts(request.app[CLIENT])
    if view is None:
        raise web.HTTPNotFound(text=SPREAD_OVER_REPLICAS)
    value = view.get(key)
    if value is None:
        raise web.HTTPNotFound(text=f"no count for {key!r}\n")
    return web.json_response({"key": key, "count": value[1]})


async def health(request: web.Request) -> web.Response:
    client = request.app[CLIENT]
    return web.json_response({"job": client.status.value, "tasks": client.assignment()})


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(flowactors_job)
    app.router.add_get("/counts/{key}", get_count)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
