"""A real HTTP server on 127.0.0.1 for egress tests: it counts hits and keeps what it saw.

It runs on its own thread and event loop, so the engine under test reaches it over real
loopback TCP like any remote API.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web


class Remote:
    """Routes: /hello, /json, /echo (the request's headers and body back as JSON),
    /slow?ms=N (the first hit only, unless every=1), /big?bytes=N, /redirect?to=URL,
    /loop (a redirect to itself, for ever), /hold (the first hit waits for `release`: a
    test kills its caller meanwhile). `most_at_once` counts requests in flight together."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.in_flight = 0
        self.most_at_once = 0
        self.seen: list[dict[str, Any]] = []
        self.held = threading.Event()  # a /hold request arrived
        self._release: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{name}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)  # cut slow handlers
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._release = asyncio.Event()
        ready.set()
        self._loop.run_forever()

    def release(self) -> None:
        assert self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    def close(self) -> None:
        async def stop() -> None:
            assert self._runner is not None
            await self._runner.cleanup()
            # Handlers the shutdown cut short: end them here, not in the garbage collector.
            pending = [task for task in asyncio.all_tasks()
                       if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        body = await request.read()
        self.seen.append({"path": name, "method": request.method,
                          "headers": request.headers.copy(), "body": body})  # any case
        if name == "hello":
            return web.Response(text="hello", headers={"x-echo": "yes"})
        if name == "json":
            return web.json_response({"n": 1, "tags": ["a", "b"]})
        if name == "echo":
            return web.json_response({"headers": dict(request.headers),
                                      "body": body.decode(errors="replace")})
        if name == "slow":
            if self.hits[name] == 1 or request.query.get("every") == "1":
                await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
            return web.Response(text="slow")
        if name == "big":
            return web.Response(body=b"x" * int(request.query.get("bytes", "1000")))
        if name == "redirect":
            raise web.HTTPFound(request.query["to"])
        if name == "loop":
            raise web.HTTPFound(f"/loop?n={self.hits[name]}")
        if name == "hold":
            if self.hits[name] == 1:
                self.held.set()
                assert self._release is not None
                await self._release.wait()
            return web.json_response({"charged": True})
        return web.Response(status=404, text="no such route")


@pytest.fixture(name="remote")
def remote_fixture() -> Iterator[Remote]:
    """A Remote for one test (imported as a fixture by the tests that use it)."""
    server = Remote()
    try:
        yield server
    finally:
        server.release()  # a /hold request still waiting must not hold up the shutdown
        server.close()
