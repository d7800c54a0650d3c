"""What changes with several workers: the listening socket uvicorn binds itself."""

import http.client
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import LOOPBACK, Server

# A client's delayed ACK holds a response written in two parts for 40 ms (Linux).
DELAYED_ACK_SECONDS = 0.040


def start(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, workers: int) -> Server:
    data_dir = tmp_path_factory.mktemp(f"workers-{workers}")
    shutil.copy(sqlite_template, data_dir / "jewelry.db")
    server = Server(f"sqlite:///{data_dir / 'jewelry.db'}", data_dir, workers=workers)
    try:
        return server.start(ready_timeout=60)
    except BaseException:
        server.close()
        raise


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Server]:
    server = start(tmp_path_factory, sqlite_template, workers=2)
    try:
        yield server
    finally:
        server.close()


def test_requests_on_a_reused_connection_do_not_wait_for_delayed_acks(two_workers: Server) -> None:
    connection = http.client.HTTPConnection(LOOPBACK, two_workers.port, timeout=10)
    durations = []
    try:
        for _ in range(200):
            started = time.perf_counter()
            connection.request("GET", "/health/live")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            durations.append(time.perf_counter() - started)
    finally:
        connection.close()
    # Not a speed goal: with the stall every request takes at least the 40 ms.
    assert statistics.median(durations) < DELAYED_ACK_SECONDS / 2
