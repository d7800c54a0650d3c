"""The service as a user runs it: `jewelry-forecast serve` in its own process, over real HTTP."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ADMIN, ADMIN_KEY
from tests.servers import CLI, Server


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    server = Server(database_url, tmp_path, graceful_timeout=5)
    try:
        yield server.start(ready_timeout=30)
    finally:
        server.close()


def test_a_store_sells_the_operator_trains_and_rolls_back(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        store = http.post("/api/v1/stores", json={"name": "Main Street"}, headers=ADMIN)
        assert store.status_code == 201
        key = {"X-API-Key": store.json()["api_key"]}

        first = [{"carats": c, "price": p} for c, p in ((1, 150), (2, 250), (3, 250))]
        assert http.post("/api/v1/sales/batch", json={"records": first}, headers=key).is_success
        v1 = http.post("/api/v1/train", json={}, headers=ADMIN).json()
        assert v1["silver_price"] == pytest.approx(350 / 3, rel=1e-9)
        assert v1["gold_price_per_carat"] == pytest.approx(50, rel=1e-9)

        csv = b"carats,price\n4,400\n5,450.50\n"
        imported = http.post(
            "/api/v1/sales/import", files={"file": ("more.csv", csv, "text/csv")}, headers=key
        )
        assert imported.json() == {"count": 2}
        v2 = http.post("/api/v1/train", json={}, headers=ADMIN).json()
        assert v2["version"] == v1["version"] + 1

        quote = http.get("/api/v1/predict", params={"carats": 15}).json()
        assert quote["model_version"] == v2["version"]
        assert float(quote["interval"]["lower"]) < float(quote["price"])

        rolled = http.post(f"/api/v1/models/{v1['version']}/activate", headers=ADMIN)
        assert rolled.status_code == 200
        back = http.post("/api/v1/predict", json={"carats": [15]}).json()
        assert back["model_version"] == v1["version"]
        assert back["predictions"][0]["price"] == f"{116.6666666667 + 50 * 15:.2f}"
        assert http.get("/api/v1/models/active").json()["version"] == v1["version"]
        assert "jewelry_http_requests_total" in http.get("/metrics").text

    server.terminate()
    # A stop that was asked for is a success: supervisors report anything else as a failure.
    assert server.wait(timeout=15) == 0
    assert '"message": "Application shutdown complete."' in server.log()


def test_the_command_line_client_imports_and_trains(server: Server, tmp_path: Path) -> None:
    base = server.base_url
    with httpx.Client(base_url=base) as http:
        store_id = http.post("/api/v1/stores", json={"name": "CLI"}, headers=ADMIN).json()["id"]
    csv = tmp_path / "sales.csv"
    rows = "\n".join(f"{c},{30 + 50 * c:.2f},{store_id}" for c in range(1, 2001))
    csv.write_text("carats,price,store_id\n" + rows + "\n")
    common = ["--url", base, "--key", ADMIN_KEY]
    imported = subprocess.run(
        [CLI, "import", str(csv), *common], capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stderr
    assert '"count": 2000' in imported.stdout
    assert "sales.csv" in imported.stderr  # the progress bar
    trained = subprocess.run([CLI, "train", *common], capture_output=True, text=True, timeout=60)
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)
    assert version["silver_price"] == pytest.approx(30.0, abs=1e-6)
    assert version["gold_price_per_carat"] == pytest.approx(50.0, rel=1e-9)
    refused = subprocess.run(
        [CLI, "train", "--url", base, "--key", "wrong"], capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "unknown or revoked API key" in refused.stdout
