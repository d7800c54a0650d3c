"""What changes with several workers: the listening socket uvicorn binds itself, and metrics
that must add up across processes."""

import http.client
import re
import shutil
import stat
import statistics
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from tests.servers import LOOPBACK, Server

LIVE_COUNTER = re.compile(
    r'^jewelry_http_requests_total\{method="GET",route="/health/live",status="200"\} (\S+)$',
    re.MULTILINE,
)
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


def live_requests_counted(http: httpx.Client) -> float:
    response = http.get("/metrics")
    assert response.status_code == 200
    found = LIVE_COUNTER.search(response.text)
    return float(found.group(1)) if found else 0.0


def test_metrics_add_up_all_workers_and_never_go_back(two_workers: Server) -> None:
    # A new connection for every request, so that both workers answer some of each.
    with two_workers.client(headers={"Connection": "close"}) as http:
        base = live_requests_counted(http)
        seen = []
        sent = 0
        for _ in range(100):
            for _ in range(2):
                assert http.get("/health/live").status_code == 200
                sent += 1
            seen.append(live_requests_counted(http))
        assert all(later >= earlier for earlier, later in pairwise(seen)), seen
        # A worker counts a request just after its response has gone out.
        deadline = time.monotonic() + 5
        while seen[-1] < base + sent and time.monotonic() < deadline:
            seen.append(live_requests_counted(http))
    assert seen[-1] == base + sent


def test_metrics_files_are_private_and_removed_when_the_server_stops(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> None:
    # One worker: uvicorn imports the app in the process that runs `serve` itself.
    server = start(tmp_path_factory, sqlite_template, workers=1)
    try:
        [directory] = server.data_dir.glob("jewelry-metrics-*")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        with server.client() as http:
            assert http.get("/health/live").status_code == 200
            assert live_requests_counted(http) == 1
        # The worker writes its values to files named after its process, not to memory.
        assert (directory / f"counter_{server.pid}.db").exists()
        server.stop()
        assert not directory.exists()
    finally:
        server.close()
