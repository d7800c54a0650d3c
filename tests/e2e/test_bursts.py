"""A burst of concurrent requests on one worker: each waits its turn and succeeds. Waiting
for SQLite's write lock, or for a pooled PostgreSQL connection, in the thread pool once left
no thread for the request that held it: 503s after the busy timeout, 500s after the pool's."""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import ADMIN
from tests.servers import Server

BURST = 100


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    # A short busy timeout and pool timeout: the burst would outlast them while waiting.
    started = Server(
        database_url,
        tmp_path,
        env={"JEWELRY_SQLITE_BUSY_TIMEOUT_MS": "2000", "JEWELRY_DB_MAX_OVERFLOW": "0"},
    )
    try:
        yield started.start(ready_timeout=30)
    finally:
        started.close()


def burst(server: Server, send: Callable[[httpx.Client, int], httpx.Response]) -> list[int]:
    with (
        httpx.Client(
            base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=BURST)
        ) as http,
        ThreadPoolExecutor(BURST) as pool,
    ):
        return [r.status_code for r in pool.map(lambda i: send(http, i), range(BURST))]


def test_a_burst_of_writes_and_reads_waits_its_turn(server: Server) -> None:
    with server.client() as http:
        store = http.post("/api/v1/stores", json={"name": "Burst"}, headers=ADMIN)
        key = {"X-API-Key": store.json()["api_key"]}

    def write(http: httpx.Client, i: int) -> httpx.Response:
        records = [{"carats": 1 + i % 7, "price": 100 + i}, {"carats": 2, "price": 150}]
        return http.post("/api/v1/sales/batch", json={"records": records}, headers=key)

    def read(http: httpx.Client, _: int) -> httpx.Response:
        return http.get("/api/v1/sales", params={"limit": 5}, headers=key)

    assert burst(server, write) == [201] * BURST
    assert burst(server, read) == [200] * BURST
    with server.client() as http:
        listed = http.get("/api/v1/sales", params={"limit": 1000}, headers=key).json()
    assert len(listed["items"]) == 2 * BURST
