"""The sales listing's queries, as the service sends them, read an index on PostgreSQL.

The statements are captured from real requests and explained on a table of 60,000 sales
that PostgreSQL has analysed, so the planner chooses on the figures it would have in use: 29
stores share nearly all of them, and a small one has 60.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from app.config import Settings
from app.main import create_app
from tests.helpers import ADMIN

SALES = 60_000
STORES = 30
DAYS = 600


@pytest.fixture
def client(pg_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(pg_settings)) as client:
        with client.app.state.db.engine.begin() as connection:  # type: ignore[attr-defined]
            connection.execute(
                text(
                    "INSERT INTO stores (name, created_at) "
                    "SELECT 'store ' || i, now() FROM generate_series(1, :stores) i"
                ),
                {"stores": STORES},
            )
            connection.execute(
                text(
                    "INSERT INTO sales (store_id, carats, price_cents, sold_at, created_at) "
                    "SELECT CASE WHEN i % 1000 = 0 THEN :stores ELSE 1 + i % (:stores - 1) END, "
                    "1 + i % 20, 10000 + i % 7919, "
                    "timestamptz '2025-01-01' + (i % :days) * interval '1 day', now() "
                    "FROM generate_series(1, :sales) i"
                ),
                {"stores": STORES, "days": DAYS, "sales": SALES},
            )
            connection.execute(text("ANALYZE sales"))
        yield client


def statements_of(client: TestClient, path: str) -> list[tuple[str, Any]]:
    """The statements reading the sales table that a GET of ``path`` sends."""
    engine = client.app.state.db.engine  # type: ignore[attr-defined]
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM sales" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        response = client.get(path, headers=ADMIN)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert response.status_code == 200, response.text
    assert response.json()["items"], "the query should find sales"
    return seen


def plan_nodes(client: TestClient, statement: str, parameters: Any) -> list[dict[str, Any]]:
    engine = client.app.state.db.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        raw = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        plan = raw.scalar_one()
    nodes, todo = [], [(plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


@pytest.mark.parametrize(
    ("path", "index"),
    [
        ("/api/v1/sales?limit=100", "pk_sales"),
        (f"/api/v1/sales?limit=100&cursor={SALES // 2}", "pk_sales"),
        # A large store's sales come soon enough in id order; a small one's from its index.
        ("/api/v1/sales?limit=100&store_id=7", "pk_sales"),
        (f"/api/v1/sales?limit=100&store_id={STORES}", "ix_sales_store_id_id"),
        (
            "/api/v1/sales?limit=100&sold_since=2025-03-01T00:00:00Z"
            "&sold_until=2025-03-02T00:00:00Z",
            "ix_sales_sold_at",
        ),
    ],
)
def test_the_sales_list_reads_an_index(client: TestClient, path: str, index: str) -> None:
    (query,) = statements_of(client, path)
    nodes = plan_nodes(client, *query)
    scans = {
        node["Node Type"]: node.get("Index Name") for node in nodes if "Scan" in node["Node Type"]
    }
    assert "Seq Scan" not in scans, scans
    assert index in scans.values(), scans
