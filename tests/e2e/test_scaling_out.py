"""Several servers on one PostgreSQL, as README.md's "Scaling out" runs them: what one
trains, every other quotes within the refresh interval."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.helpers import ADMIN
from tests.servers import Server

REFRESH_SECONDS = 1.0
# The refresh interval, and time for a loaded machine to answer the request that sees it.
DEADLINE_SECONDS = REFRESH_SECONDS + 0.5


@pytest.fixture
def servers(pg_settings: Settings, tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            server = Server(
                pg_settings.DATABASE_URL,
                tmp_path / name,
                env={"JEWELRY_MODEL_REFRESH_SECONDS": str(REFRESH_SECONDS)},
            )
            started.append(server.start(ready_timeout=30))
        yield started
    finally:
        for server in started:
            server.close()


def quoted_version(http: httpx.Client) -> int:
    response = http.get("/api/v1/predict", params={"carats": 15})
    assert response.status_code == 200, response.text
    return int(response.json()["model_version"])


def test_a_version_trained_through_one_server_is_quoted_by_the_other(
    servers: list[Server],
) -> None:
    a, b = servers
    assert a.port != b.port
    with (
        httpx.Client(base_url=a.base_url, timeout=30) as http_a,
        httpx.Client(base_url=b.base_url, timeout=30) as http_b,
    ):
        store = http_a.post("/api/v1/stores", json={"name": "Main Street"}, headers=ADMIN)
        key = {"X-API-Key": store.json()["api_key"]}
        first = [{"carats": c, "price": p} for c, p in ((1, 150), (2, 250), (3, 250))]
        assert http_b.post("/api/v1/sales/batch", json={"records": first}, headers=key).is_success
        v1 = http_a.post("/api/v1/train", json={}, headers=ADMIN).json()["version"]
        # B has never served a model: its first quote reads the active one.
        assert quoted_version(http_b) == v1

        more = [{"carats": 4, "price": 400}, {"carats": 5, "price": "450.50"}]
        assert http_b.post("/api/v1/sales/batch", json={"records": more}, headers=key).is_success
        trained = http_a.post("/api/v1/train", json={}, headers=ADMIN)
        assert trained.status_code == 201, trained.text
        v2 = trained.json()
        deadline = time.monotonic() + DEADLINE_SECONDS
        # The server that trained quotes the new version at once.
        assert quoted_version(http_a) == v2["version"]
        seen = [quoted_version(http_b)]
        while seen[-1] != v2["version"] and time.monotonic() < deadline:
            time.sleep(0.05)
            seen.append(quoted_version(http_b))
        # Until it checks, B quotes the version it had; then the new one, and never back.
        assert set(seen) <= {v1, v2["version"]}
        assert seen[-1] == v2["version"], f"B still quoted v{v1} {DEADLINE_SECONDS} s later"
        assert seen == sorted(seen)
        quote = http_b.get("/api/v1/predict", params={"carats": 15}).json()
        assert quote["model_version"] == v2["version"]
        price = v2["silver_price"] + 15 * v2["gold_price_per_carat"]
        assert quote["price"] == f"{price:.2f}"
