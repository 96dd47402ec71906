"""Serving the endpoints: a standalone aiohttp server, aiohttp routes, an ASGI app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

from flowactors.api.environment import JobClient
from flowactors.monitoring._endpoints import PATHS, Endpoints, Response
from flowactors.monitoring._scaleout import monitor_for


def _to_aiohttp(response: Response) -> web.Response:
    content_type, _, params = response.content_type.partition(";")
    charset = params.partition("charset=")[2].strip() or None
    return web.Response(
        status=response.status,
        body=response.body,
        content_type=content_type.strip(),
        charset=charset,
        headers=response.headers,
    )


def aiohttp_routes(client: JobClient, *, token: str | None = None) -> list[web.RouteDef]:
    """The monitoring routes, to add to a service's own ``aiohttp.web.Application``::

        app.add_routes(monitoring.aiohttp_routes(client))

    Checkpoint history is sampled while requests come in; use
    :class:`MonitoringServer` for a history that misses nothing between requests.
    """
    endpoints = Endpoints(monitor_for(client), token)
    return _routes(endpoints)


def _routes(endpoints: Endpoints) -> list[web.RouteDef]:
    async def handler(request: web.Request) -> web.Response:
        body = await request.read() if request.can_read_body else b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        return _to_aiohttp(await endpoints.handle(request.method, request.path, headers, body))

    return [web.route("*", path, handler) for path in PATHS]


ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


def asgi_app(client: JobClient, *, token: str | None = None) -> ASGIApp:
    """The monitoring endpoints as a plain ASGI application (mount it under any prefix:
    paths are taken relative to the scope's ``root_path``). Its lifespan events start
    and stop checkpoint sampling."""
    monitor = monitor_for(client)
    endpoints = Endpoints(monitor, token)

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    monitor.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await monitor.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        response = await endpoints.handle(scope["method"], path, headers, body)
        raw_headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in response.headers.items()),
        ]
        await send(
            {"type": "http.response.start", "status": response.status, "headers": raw_headers}
        )
        await send(
            {
                "type": "http.response.body",
                "body": b"" if scope["method"] == "HEAD" else response.body,
            }
        )

    return app


class MonitoringServer:
    """Serves a job's monitoring endpoints over HTTP (aiohttp)::

        client = await env.execute_async("orders")
        server = MonitoringServer(client)          # http://127.0.0.1:8081/
        await server.start()
        ...
        await server.stop()

    It listens on loopback unless ``host`` names another address: binding to
    every interface takes an explicit ``host="0.0.0.0"``. ``POST /api/savepoints``
    is refused unless ``token`` is given, and then requires
    ``Authorization: Bearer <token>``. ``port=0`` picks a free port (see
    :attr:`port` after :meth:`start`).
    """

    def __init__(
        self,
        client: JobClient,
        host: str = "127.0.0.1",
        port: int = 8081,
        *,
        token: str | None = None,
    ) -> None:
        if not isinstance(host, str) or not host.strip():
            raise ValueError(
                "host must name an address: '127.0.0.1' (the default) for this machine only, "
                "or e.g. '0.0.0.0' to listen on every interface"
            )
        self.host = host
        self._port = port
        self.monitor = monitor_for(client)
        self.endpoints = Endpoints(self.monitor, token)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the chosen one, after ``start()`` with ``port=0``)."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.add_routes(_routes(self.endpoints))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple):
                self._port = int(address[1])
                break
        self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> MonitoringServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
