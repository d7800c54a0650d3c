"""The HTTP protocol of `serve` (app/server.py) in process, for each of uvicorn's protocol
classes installed: TCP_NODELAY, the timeouts for stalled requests, the connection limit."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from uvicorn import Config
from uvicorn.server import ServerState

from app import server
from app.config import Settings
from app.main import create_app
from app.server import PROTOCOLS, ConnectionLimits

LIMITS = ConnectionLimits(
    max_connections=3, header_timeout=0.3, body_timeout=0.3, write_timeout=0.3
)
# Far above the timeouts: how long a test waits for something that must happen.
PATIENCE = 5.0
GET = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
PARSER_REFUSED = "not a valid HTTP/1.1 request: its request line, headers or framing"

pytestmark = pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda cls: cls.__name__)


async def echo_length(
    scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any
) -> None:
    """Reads the whole body, answers with its length."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def endless(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """Answers with a stream that goes on for as long as the client reads it."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(10_000):
        await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def serving(
    protocol: type[asyncio.Protocol], app: Any = echo_length
) -> AsyncIterator[tuple[tuple[str, int], ServerState]]:
    """The protocol behind a listening socket made the way uvicorn makes it for several
    workers (``Config.bind_socket``: proto 0, so asyncio does not set TCP_NODELAY)."""
    config = Config(app, host="127.0.0.1", port=0, http=protocol, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    listener = config.bind_socket()
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(
        lambda: protocol(config=config, server_state=state, app_state={}), sock=listener
    )
    try:
        yield listener.getsockname(), state
    finally:
        listening.close()
        for connection in list(state.connections):
            connection.transport.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes the connection within PATIENCE."""
    try:
        return await asyncio.wait_for(reader.read(), PATIENCE) == b""
    except ConnectionResetError:
        return True


async def answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)


@pytest.fixture(autouse=True)
def _small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "worker_limits", lambda: LIMITS)


def test_accepted_sockets_have_tcp_nodelay(protocol: type[asyncio.Protocol]) -> None:
    async def scenario() -> int:
        async with serving(protocol) as (address, state):
            _, writer = await asyncio.open_connection(*address)
            while not state.connections:
                await asyncio.sleep(0.01)
            [connection] = state.connections
            accepted = connection.transport.get_extra_info("socket")
            writer.close()
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    assert asyncio.run(scenario()) != 0


def test_requests_on_a_kept_alive_connection_are_answered(protocol: type[asyncio.Protocol]) -> None:
    async def scenario() -> list[bytes]:
        async with serving(protocol) as (address, _):
            reader, writer = await asyncio.open_connection(*address)
            answers = []
            for body in (b"", b"x" * 100_000, b"abc"):
                head = f"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n"
                writer.write(head.encode() + body)
                answers.append(await answer(reader))
            writer.close()
            return answers

    assert asyncio.run(scenario()) == [
        b"HTTP/1.1 200 OK 0",
        b"HTTP/1.1 200 OK 100000",
        b"HTTP/1.1 200 OK 3",
    ]


def test_stalled_headers_and_bodies_are_closed_after_their_timeout(
    protocol: type[asyncio.Protocol],
) -> None:
    async def scenario() -> tuple[bool, bool, float, bool]:
        async with serving(protocol) as (address, _):
            loop = asyncio.get_running_loop()
            started = loop.time()
            # Headers dripping in, each byte well within the timeout, never finished.
            drip_reader, drip = await asyncio.open_connection(*address)
            # Headers complete, then a body that stops half-way.
            body_reader, body = await asyncio.open_connection(*address)
            body.write(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n12345")
            for byte in b"GET / HTTP/1.1\r\nHost: te":
                drip.write(bytes([byte]))
                await asyncio.sleep(LIMITS.header_timeout / 10)
                if drip_reader.at_eof():
                    break
            dripped_until = loop.time() - started
            drip_closed = await closed_by_server(drip_reader)
            body_closed = await closed_by_server(body_reader)
            # A connection that is answered is left alone by the timers.
            reader, writer = await asyncio.open_connection(*address)
            writer.write(GET)
            fresh = await answer(reader)
            return drip_closed, body_closed, dripped_until, fresh == b"HTTP/1.1 200 OK 0"

    drip_closed, body_closed, dripped_until, answered = asyncio.run(scenario())
    assert drip_closed and body_closed and answered
    # Closed when the header timeout was up, not at the first pause.
    assert dripped_until >= LIMITS.header_timeout * 0.9


def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(
    protocol: type[asyncio.Protocol],
) -> None:
    async def scenario() -> tuple[bool, float]:
        async with serving(protocol, endless) as (address, state):
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection(*address, limit=2**16)
            writer.write(GET)
            await reader.readexactly(2**16)  # reads a little, then no more
            stalled = loop.time()
            while state.connections and loop.time() < stalled + PATIENCE:
                await asyncio.sleep(0.05)
            return not state.connections, loop.time() - stalled

    dropped, after = asyncio.run(scenario())
    assert dropped
    assert after >= LIMITS.write_timeout * 0.9


def test_at_the_limit_the_longest_waiting_connection_makes_room(
    protocol: type[asyncio.Protocol], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timeouts out of the way: only the limit closes connections here.
    patient = replace(LIMITS, header_timeout=PATIENCE * 2)
    monkeypatch.setattr(server, "worker_limits", lambda: patient)

    async def scenario() -> tuple[bool, list[bool], bytes]:
        async with serving(protocol) as (address, _):
            idle = [await asyncio.open_connection(*address) for _ in range(LIMITS.max_connections)]
            await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection(*address)
            writer.write(GET)
            fresh = await answer(reader)
            oldest_closed = await closed_by_server(idle[0][0])
            others_open = [not r.at_eof() for r, _ in idle[1:]]
            return oldest_closed, others_open, fresh

    oldest_closed, others_open, fresh = asyncio.run(scenario())
    assert fresh == b"HTTP/1.1 200 OK 0"
    assert oldest_closed
    assert all(others_open)


async def header_echo(
    scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any
) -> None:
    """Answers with the value of the request's X-API-Key header."""
    body = dict(scope["headers"]).get(b"x-api-key", b"")
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_spaces_after_a_header_value_are_not_part_of_it(protocol: type[asyncio.Protocol]) -> None:
    async def scenario() -> bytes:
        async with serving(protocol, header_echo) as (address, _):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET / HTTP/1.1\r\nHost: test\r\nX-API-Key:  jf_key \t \r\n\r\n")
            got = await answer(reader)
            writer.close()
            return got

    assert asyncio.run(scenario()) == b"HTTP/1.1 200 OK jf_key"


@pytest.mark.parametrize(
    "request_head",
    [
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: +3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        b"GET / HTTP/1.1\r\nHost: test\r\nX-Bad: a\x00b\r\n\r\n",
    ],
)
def test_a_request_the_parser_refuses_is_answered_in_json(
    protocol: type[asyncio.Protocol], request_head: bytes
) -> None:
    async def scenario() -> tuple[bytes, bytes, bool]:
        async with serving(protocol) as (address, _):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(request_head)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
            body = await asyncio.wait_for(reader.read(), PATIENCE)
            writer.close()
            return head, body, reader.at_eof()

    head, body, closed = asyncio.run(scenario())
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"detail": PARSER_REFUSED}
    assert closed


def test_a_refused_request_after_a_good_one_is_answered_after_it(
    protocol: type[asyncio.Protocol],
) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async with serving(protocol) as (address, _):
            reader, writer = await asyncio.open_connection(*address)
            good = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc"
            writer.write(good + b"\x00GARBAGE / HTTP/1.1\r\n\r\n")
            first = await answer(reader)
            second = await asyncio.wait_for(reader.read(), PATIENCE)
            writer.close()
            return first, second

    first, second = asyncio.run(scenario())
    assert first == b"HTTP/1.1 200 OK 3"
    assert second.startswith(b"HTTP/1.1 400 ")
    assert json.loads(second.split(b"\r\n\r\n", 1)[1]) == {"detail": PARSER_REFUSED}


@pytest.mark.parametrize(
    ("request_head", "status", "detail"),
    [
        (
            b"POST /api/v1/sales HTTP/2.0\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}",
            505,
            "HTTP/2.0 is not supported: send HTTP/1.1",
        ),
        (
            b"POST /api/v1/sales\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}",
            505,
            "HTTP/0.9 is not supported: send HTTP/1.1",
        ),
        (
            b"POST /api/v1/sales HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked"
            b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            501,
            "the only Transfer-Encoding taken is chunked",
        ),
        (
            b"POST /api/v1/sales HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip"
            b"\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            501,
            "the only Transfer-Encoding taken is chunked",
        ),
    ],
)
def test_framings_the_service_does_not_speak_are_refused(
    protocol: type[asyncio.Protocol], tmp_path: Path, request_head: bytes, status: int, detail: str
) -> None:
    app = create_app(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'j.db'}"))

    async def scenario() -> tuple[bytes, bytes]:
        async with serving(protocol, app) as (address, _):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(request_head)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
            body = await asyncio.wait_for(reader.read(), PATIENCE)
            writer.close()
            return head, body

    head, body = asyncio.run(scenario())
    got = int(head.split(b" ")[1]), json.loads(body)["detail"]
    # h11 refuses a coding other than chunked itself, httptools lets the app refuse it.
    assert got in ((status, detail), (400, PARSER_REFUSED)), got
