"""Hostile connections against a real server whose worker may open only 256 files: a flood
of requests that never finish their headers, and the accept() failures it causes."""

import json
import selectors
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import LOOPBACK, Server

OPEN_FILES = 256
HEADER_TIMEOUT = 3.0
# More connections than the worker may open files: without a limit they would take them all.
FLOOD = 400


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("connections")
    shutil.copy(sqlite_template, data_dir / "jewelry.db")
    server = Server(
        f"sqlite:///{data_dir / 'jewelry.db'}",
        data_dir,
        wrapper=("prlimit", f"--nofile={OPEN_FILES}:{OPEN_FILES}"),
        env={
            "JEWELRY_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "JEWELRY_LOG_REPEAT_SECONDS": "1",
        },
    )
    try:
        yield server.start(ready_timeout=30)
    finally:
        server.close()


def open_unfinished_requests(port: int, count: int) -> list[socket.socket]:
    """Connections that send the start of a request and never the end of its headers."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((LOOPBACK, port), timeout=5)
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: slow\r\n")
        sockets.append(sock)
    return sockets


def count_open(sockets: list[socket.socket], within: float) -> int:
    """How many of the sockets the server has still not closed after `within` seconds."""
    still_open = set(sockets)
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while still_open and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    ended = sock.recv(4096) == b""
                except OSError:  # reset: the server closed it with our bytes unread
                    ended = True
                if ended:
                    still_open.discard(sock)
                    selector.unregister(sock)
    return len(still_open)


def test_a_flood_of_unfinished_requests_neither_silences_the_service_nor_stays(
    server: Server,
) -> None:
    flood = open_unfinished_requests(server.port, FLOOD)
    try:
        # Promptly: before the header timeout frees anything, the connection limit has.
        live = httpx.get(f"{server.base_url}/health/live", timeout=HEADER_TIMEOUT - 0.5)
        assert live.status_code == 200
        # Every one of them is closed: to make room, or when its header timeout is up.
        assert count_open(flood, within=HEADER_TIMEOUT + 10) == 0
    finally:
        for sock in flood:
            sock.close()


def test_running_out_of_files_logs_a_few_lines_not_megabytes(server: Server) -> None:
    flood = open_unfinished_requests(server.port, FLOOD)
    try:
        # accept() runs out of files until the limit and the timeouts free descriptors.
        # uvloop (libuv) sheds such connections silently; asyncio's loop logs each failure,
        # 2,048 in a burst, and the repeat filter must fold them into a line a second.
        count_open(flood, within=HEADER_TIMEOUT + 10)
    finally:
        for sock in flood:
            sock.close()
    assert httpx.get(f"{server.base_url}/health/live", timeout=5).status_code == 200
    assert server.log_path.stat().st_size < 1_000_000
    entries = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    failures = [e for e in entries if "accept() out of system resource" in e["message"]]
    assert len(failures) <= 2 * (HEADER_TIMEOUT + 10)
    if len(failures) > 1:
        assert any(entry.get("suppressed", 0) > 0 for entry in failures)
