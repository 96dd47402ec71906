"""An ASGI service (Starlette; FastAPI's ``lifespan=`` is the same) running a flowactors job.

    SERVICE_STATE=/tmp/counts python -m examples.service_asgi --port 8080
    curl localhost:8080/counts/key-3        # {"key": "key-3", "count": 1234}

The lifespan starts the job before the app serves and, when the server shuts
down (uvicorn turns SIGTERM and Ctrl-C into a lifespan shutdown), stops it with
a savepoint that the next start resumes from. Handlers read the job's keyed
state live, restored counts included. Replicas share one job when started with
``SERVICE_APPLICATION_ID`` (see ``examples/service_job.py`` and
``examples/service_aiohttp.py``).
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from examples.service_job import (
    SPREAD_OVER_REPLICAS,
    counts,
    report_leftover_tasks,
    start_job,
    state_dir,
    stop_job,
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state = state_dir()
    client = await start_job(state)
    app.state.client = client
    try:
        yield
    finally:
        await stop_job(client, state)
        report_leftover_tasks()


async def get_count(request: Request) -> Response:
    key = request.path_params["key"]
    view = counts(request.app.state.client)
    if view is None:
        return PlainTextResponse(SPREAD_OVER_REPLICAS, status_code=404)
    value = view.get(key)
    if value is None:
        return PlainTextResponse(f"no count for {key!r}\n", status_code=404)
    return JSONResponse({"key": key, "count": value[1]})


async def health(request: Request) -> Response:
    client = request.app.state.client
    return JSONResponse({"job": client.status.value, "tasks": client.assignment()})


app = Starlette(
    routes=[Route("/counts/{key}", get_count), Route("/healthz", health)], lifespan=lifespan
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again, to the
    # handler that was there before: make that one end the process with status 0 (a
    # supervisor's normal stop is not an error).
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
