"""The service as a user runs it: `jewelry-forecast serve` in its own process, over real HTTP."""

import json
import os
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
    assert '"message":"Application shutdown complete."' in server.log()


def cli(*args: str, key: str | None = ADMIN_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JEWELRY_API_KEY"}
    command = [CLI, *args, *(["--key", key] if key else [])]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_the_command_line_client_imports_trains_quotes_and_exports(
    server: Server, tmp_path: Path
) -> None:
    base = ["--url", server.base_url]
    with httpx.Client(base_url=server.base_url) as http:
        store_id = http.post("/api/v1/stores", json={"name": "CLI"}, headers=ADMIN).json()["id"]
    csv = tmp_path / "sales.csv"
    rows = "\n".join(f"{c},{30 + 50 * c:.2f},,{store_id}" for c in range(1, 2001))
    csv.write_text("carats,price,sold_at,store_id\n" + rows + "\n")

    imported = cli("import", str(csv), *base, "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"count": 2000}
    assert "sales.csv" in imported.stderr  # the progress bar

    trained = cli("train", *base, "--json")
    assert trained.returncode == 0, trained.stderr
    version = json.loads(trained.stdout)
    assert version["silver_price"] == pytest.approx(30.0, abs=1e-6)
    assert version["gold_price_per_carat"] == pytest.approx(50.0, rel=1e-9)
    plain = cli("train", *base, "--learning-rate", "1e-9", "--no-scaling", "--tolerance", "0")
    assert plain.returncode == 0, plain.stderr
    assert "version 2 (completed, active)" in plain.stdout

    # Reads need no key.
    quoted = cli("quote", "1", "15", *base, key=None)
    assert quoted.returncode == 0, quoted.stderr
    assert quoted.stdout.splitlines()[-1] == "model version 2"
    api = httpx.post(f"{server.base_url}/api/v1/predict", json={"carats": [15]}).json()
    assert f"15 carats: ${float(api['predictions'][0]['price']):,.2f}" in quoted.stdout
    activated = cli("activate", str(version["version"]), *base)
    assert activated.stdout.strip() == f"version {version['version']} is active"
    prices = cli("prices", *base, key=None)
    assert "silver price:" in prices.stdout and "$30.00" in prices.stdout
    models = cli("models", *base, key=None).stdout.splitlines()
    assert models[0].split()[:3] == ["version", "trained", "method"]
    assert [line.split()[0] for line in models[1:]] == ["2", "*"]

    exported = tmp_path / "again.csv"
    done = cli("export", str(exported), *base, "--store-id", str(store_id))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"exported 2000 sales to {exported}"
    assert "again.csv" in done.stderr  # the progress bar
    lines = exported.read_text().splitlines()
    assert lines[0] == "carats,price,sold_at,store_id" and len(lines) == 2001

    refused = cli("train", *base, key="wrong")
    assert refused.returncode == 1
    assert "401: unknown or revoked API key" in refused.stderr
    no_server = cli("prices", "--url", "http://127.0.0.1:9", key=None)
    assert no_server.returncode == 1 and "cannot reach the service" in no_server.stderr
