"""Helpers the API tests share."""

from typing import Any

import httpx
from fastapi.testclient import TestClient

ADMIN_KEY = "test-admin-key-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}
# Three sales on a line close to 70 + 40 x: enough for a fit with intervals.
THREE_SALES = [(1, "110"), (2, "150"), (3, "191")]


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


def all_items(
    http: httpx.Client,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    limit: int = 1000,
    max_pages: int = 1000,
) -> list[dict[str, Any]]:
    """Every item of a paged listing ({items, next_cursor}), following the cursor."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = http.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"more than {max_pages} pages at {path}")


def count_sales(client: TestClient) -> int:
    """Every sale stored, counted through the API with the admin key."""
    return len(all_items(client, "/api/v1/sales", headers=ADMIN))
