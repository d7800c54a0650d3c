"""The article's three stores, end to end through the API."""

import pytest
from fastapi.testclient import TestClient

from tests.helpers import ADMIN, new_store


def test_three_store_example_learns_silver_116_67_and_gold_50(client: TestClient) -> None:
    for name, carats, price in (
        ("Store 1", 1, "150"),
        ("Store 2", 2, "250"),
        ("Store 3", 3, "250"),
    ):
        _, key = new_store(client, name)
        response = client.post(
            "/api/v1/sales", json={"carats": carats, "price": price}, headers=key
        )
        assert response.status_code == 201, response.text

    trained = client.post("/api/v1/train", json={}, headers=ADMIN)
    assert trained.status_code == 201, trained.text
    version = trained.json()
    assert version["active"] is True
    assert version["converged"] is True
    assert version["n_samples"] == 3

    prices = client.get("/api/v1/prices").json()
    # Learned prices are estimates, at full precision; quotes are amounts, in cents.
    assert prices["silver_price"] == pytest.approx(350 / 3, rel=1e-9)
    assert prices["gold_price_per_carat"] == pytest.approx(50, rel=1e-9)
    assert prices["model_version"] == version["version"]

    quote = client.get("/api/v1/predict", params={"carats": 15}).json()
    assert quote["price"] == f"{116.6666666667 + 50 * 15:.2f}"
