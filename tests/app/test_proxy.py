"""Single-port serving: the /viser/<token> HTTP and WebSocket relay, routing by token, the
session registry (one viser server per session, stopped on close), and the whole app on one
port."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
import viser
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.explorer import Explorer, Limits
from app.proxy import TOKEN_RE, add_viser_proxy, run_uvicorn, viewer_path

SUBPROTOCOL = f"viser-v{viser.__version__}"


def _wait(cond, timeout=15.0):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.05)
    return True


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


@pytest.fixture
def explorer(provider, tmp_path):
    ex = Explorer(provider, work_dir=tmp_path, limits=Limits(num_points=256, max_sessions=4))
    yield ex
    ex.shutdown()


@pytest.fixture
def proxy(explorer):
    from fastapi import FastAPI

    api = FastAPI()
    add_viser_proxy(api, explorer.viewer_port)
    server = run_uvicorn(api, host="127.0.0.1", port=None)
    yield server
    server.close()


class EchoServer:
    """A stand-in viser upstream on its own thread: greets with its name, then echoes text and
    bytes; accepts only viser's subprotocol (as viser does)."""

    def __init__(self, name: str) -> None:
        import threading

        from websockets.asyncio.server import serve

        self.name = name
        self.port = 0
        ready = threading.Event()

        async def handler(ws):
            await ws.send(f"hello from {name}")
            async for msg in ws:
                await ws.send(msg)

        async def main():
            self._stop = asyncio.Event()
            async with serve(handler, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL]) as srv:  # type: ignore[list-item]
                self.port = srv.sockets[0].getsockname()[1]
                ready.set()
                await self._stop.wait()

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(10)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def echo_proxy():
    from fastapi import FastAPI

    upstreams = {"a" * 24: EchoServer("A"), "b" * 24: EchoServer("B")}
    api = FastAPI()
    add_viser_proxy(api, lambda t: upstreams[t].port if t in upstreams else None)
    server = run_uvicorn(api, host="127.0.0.1", port=None)
    yield server.url.replace("http://", "ws://"), upstreams
    server.close()
    for u in upstreams.values():
        u.close()


def test_websocket_relay_routes_by_token_both_ways(echo_proxy):
    base, _ = echo_proxy

    async def run(token, name):
        async with connect(base + f"viser/{token}", subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == SUBPROTOCOL
            assert await asyncio.wait_for(ws.recv(), 10) == f"hello from {name}"
            await ws.send(b"\x00\x01binary\xff")
            assert await asyncio.wait_for(ws.recv(), 10) == b"\x00\x01binary\xff"
            await ws.send("text frame")
            assert await asyncio.wait_for(ws.recv(), 10) == "text frame"
            big = bytes(range(256)) * 4096                  # 1 MiB in one frame
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 10) == big

    asyncio.run(run("a" * 24, "A"))
    asyncio.run(run("b" * 24, "B"))


def test_upstream_going_away_closes_the_browser_socket(echo_proxy):
    base, upstreams = echo_proxy

    async def run():
        async with connect(base + f"viser/{'a' * 24}", subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            await asyncio.wait_for(ws.recv(), 10)
            upstreams["a" * 24].close()
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(run())


def test_two_sessions_get_separate_viewers_and_close_stops_them(explorer):
    a, b = explorer.open_session("a"), explorer.open_session("b")
    assert a.viewer.port != b.viewer.port and a.viewer_token != b.viewer_token
    assert TOKEN_RE.match(a.viewer_token) and TOKEN_RE.match(b.viewer_token)
    assert explorer.viewer_port(a.viewer_token) == a.viewer.port
    assert explorer.viewer_port(b.viewer_token) == b.viewer.port
    assert explorer.viewer_port("x" * 24) is None
    port_a = a.viewer.port
    explorer.close_session("a")
    assert a.closed and a.viewer.closed and explorer.viewer_port(a.viewer_token) is None
    assert _wait(lambda: _refuses(port_a)), "the closed session's viser server still accepts connections"
    assert explorer.viewer_port(b.viewer_token) == b.viewer.port and not _refuses(b.viewer.port)


def test_http_reaches_the_right_session(explorer, proxy):
    a, b = explorer.open_session("a"), explorer.open_session("b")
    base = proxy.url
    direct = httpx.get(f"http://127.0.0.1:{a.viewer.port}/").content
    r = httpx.get(base + viewer_path(a.viewer_token))
    assert r.status_code == 200 and r.content == direct and b"Viser" in r.content
    assert httpx.get(base + f"viser/{a.viewer_token}", follow_redirects=True).content == direct
    assert httpx.get(base + viewer_path(b.viewer_token)).status_code == 200
    assert httpx.head(base + viewer_path(b.viewer_token)).status_code == 200


def test_websocket_reaches_a_real_viser_server(explorer, proxy):
    s = explorer.open_session("a")
    url = proxy.url.replace("http://", "ws://") + f"viser/{s.viewer_token}"

    async def run():
        async with connect(url, subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == SUBPROTOCOL
            first = await asyncio.wait_for(ws.recv(), 15)    # the scene's opening messages
            assert isinstance(first, bytes) and len(first) > 0

    asyncio.run(run())


def test_unknown_bad_and_closed_tokens(explorer, proxy):
    base = proxy.url
    for token in ("x" * 24, "short", "a" * 24 + "%2F..", "..%2F..%2Fetc"):
        assert httpx.get(base + f"viser/{token}/").status_code == 404

    async def refused(token):
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            async with connect(base.replace("http://", "ws://") + f"viser/{token}",
                               subprotocols=[SUBPROTOCOL]) as c:  # type: ignore[list-item]
                await asyncio.wait_for(c.recv(), 5)

    asyncio.run(refused("y" * 24))
    s = explorer.open_session("c")
    explorer.close_session("c")
    assert httpx.get(base + viewer_path(s.viewer_token)).status_code == 404
    asyncio.run(refused(s.viewer_token))


def test_closing_a_session_ends_its_open_websocket(explorer, proxy):
    s = explorer.open_session("d")
    url = proxy.url.replace("http://", "ws://") + f"viser/{s.viewer_token}"

    async def run():
        async with connect(url, subprotocols=[SUBPROTOCOL]) as ws:  # type: ignore[list-item]
            await asyncio.wait_for(ws.recv(), 15)
            explorer.close_session("d")
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 15)

    asyncio.run(run())


def test_whole_app_on_one_port(provider, examples_dir, tmp_path):
    from app.main import build_app, start

    app = build_app(provider, cache_dir=tmp_path, examples_dir=examples_dir, single_port=True,
                    limits=Limits(num_points=256))
    try:
        start(app, host="127.0.0.1", port=None)
        assert app.server is not None and app.url == app.server.url
        page = httpx.get(app.url, timeout=30)
        assert page.status_code == 200 and "Tango3D explorer" in page.text
        s = app.explorer.open_session("page")
        r = httpx.get(app.url + viewer_path(s.viewer_token), timeout=30)
        assert r.status_code == 200 and b"Viser" in r.content
        with pytest.raises(ValueError, match="share"):
            start(app, share=True)
    finally:
        app.close()
    assert app.explorer.sessions() == [] and s.viewer.closed
    assert not app.explorer.work_dir.exists()
