"""Helpers the API tests share."""

from fastapi.testclient import TestClient

ADMIN_KEY = "test-admin-key-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}


def new_store(client: TestClient, name: str = "Store") -> tuple[int, dict[str, str]]:
    """Register a store; returns its id and the headers that carry its key."""
    response = client.post("/api/v1/stores", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], {"X-API-Key": body["api_key"]}


def add_sales(client: TestClient, headers: dict[str, str], rows: list[tuple[float, str]]) -> None:
    records = [{"carats": c, "price": p} for c, p in rows]
    response = client.post("/api/v1/sales/batch", json={"records": records}, headers=headers)
    assert response.status_code == 201, response.text


def count_sales(client: TestClient) -> int:
    """Every sale stored, counted through the API with the admin key."""
    total, cursor = 0, None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/sales", params=params, headers=ADMIN).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total
