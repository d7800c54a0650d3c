"""The CSV export (the import's columns, streamed) and the sample the dashboard plots."""

import csv
import io

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from app.services import sales
from app.services.aggregates import SalesFilter
from tests.helpers import ADMIN, add_sales, new_store


def all_sales(client: TestClient, headers: dict[str, str]) -> list[tuple]:  # type: ignore[type-arg]
    items = client.get("/api/v1/sales", params={"limit": 1000}, headers=headers).json()["items"]
    return sorted((s["store_id"], s["carats"], s["price"], s["sold_at"]) for s in items)


def test_an_export_imported_again_gives_the_same_sales(client: TestClient) -> None:
    store_id, key = new_store(client)
    records = [
        {"carats": 0.001, "price": "0.01", "sold_at": "1900-01-01T00:00:00Z"},
        {"carats": 1 / 3, "price": "250.10", "sold_at": "2026-11-20T14:30:00.123456+02:00"},
        {"carats": 10_000, "price": "99999999.99", "sold_at": "2099-12-31T23:59:59Z"},
        {"carats": 2.5, "price": 7},
    ]
    assert (
        client.post("/api/v1/sales/batch", json={"records": records}, headers=key).status_code
        == 201
    )
    _other_id, other = new_store(client, "Other")
    client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=other)
    before = all_sales(client, key)

    export = client.get("/api/v1/sales/export", headers=key)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 4 and {r["store_id"] for r in rows} == {str(store_id)}

    for sale in client.get("/api/v1/sales", headers=key).json()["items"]:
        client.delete(f"/api/v1/sales/{sale['id']}", headers=key)
    files = {"file": ("sales.csv", export.content, "text/csv")}
    imported = client.post("/api/v1/sales/import", files=files, headers=ADMIN)
    assert imported.status_code == 201, imported.text
    assert all_sales(client, key) == before


def test_the_export_filters_like_the_listing_and_keeps_stores_apart(client: TestClient) -> None:
    store_id, key = new_store(client)
    other_id, other = new_store(client, "Other")
    for day, headers in ((1, key), (2, key), (3, other)):
        sale = {"carats": day, "price": 10, "sold_at": f"2026-03-0{day}T00:00:00Z"}
        client.post("/api/v1/sales", json=sale, headers=headers)
    since = {"sold_since": "2026-03-02T00:00:00Z"}
    mine = client.get("/api/v1/sales/export", params=since, headers=key).text.splitlines()
    assert mine == ["carats,price,sold_at,store_id", f"2.0,10.00,2026-03-02T00:00:00Z,{store_id}"]
    everything = client.get("/api/v1/sales/export", headers=ADMIN).text.splitlines()
    assert len(everything) == 4
    assert (
        client.get("/api/v1/sales/export", params={"store_id": other_id}, headers=key).status_code
        == 403
    )
    assert client.get("/api/v1/sales/export").status_code == 401


def test_a_sample_is_bounded_uniform_and_a_stores_own(client: TestClient) -> None:
    _store_id, key = new_store(client)
    other_id, other = new_store(client, "Other")
    for headers, price in ((key, "100"), (other, "900")):
        records = [{"carats": 1 + i / 1000, "price": price} for i in range(3000)]
        client.post("/api/v1/sales/batch", json={"records": records}, headers=headers)
    small = client.get("/api/v1/sales/sample", params={"size": 5000}, headers=key).json()
    assert small["n_sales"] == 3000 and len(small["items"]) == 3000
    sample = client.get("/api/v1/sales/sample", params={"size": 500}, headers=key).json()
    assert sample["n_sales"] == 3000
    assert 400 <= len(sample["items"]) <= 500
    assert {p["price"] for p in sample["items"]} == {"100.00"}
    # Spread over the whole range, not the first rows.
    carats = sorted(p["carats"] for p in sample["items"])
    assert carats[0] < 1.5 and carats[-1] > 3.5
    everyone = client.get("/api/v1/sales/sample", params={"size": 500}, headers=ADMIN).json()
    assert everyone["n_sales"] == 6000
    assert {p["price"] for p in everyone["items"]} == {"100.00", "900.00"}
    assert (
        client.get("/api/v1/sales/sample", params={"store_id": other_id}, headers=key).status_code
        == 403
    )


def test_an_export_holds_no_transaction_while_its_reader_is_slow(
    client: TestClient, settings: Settings
) -> None:
    """Each chunk is read in a transaction of its own: a reader slower than the writers must
    not hold a snapshot that SQLite's WAL, or PostgreSQL's vacuum, would grow behind."""
    _, key = new_store(client)
    add_sales(client, key, [(1 + i, f"{100 + i}") for i in range(5)])
    db = Database(settings)
    try:
        chunks = sales.export_rows(db, SalesFilter(), chunk=2)
        first = next(chunks)
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        added = client.post("/api/v1/sales", json={"carats": 9, "price": 9}, headers=key)
        assert added.status_code == 201
        rest = [sale for chunk in chunks for sale in chunk]
        assert [s.id for s in first + rest] == sorted({s.id for s in first + rest})
        assert len(first + rest) == 6  # the sale added after the first chunk comes last
    finally:
        db.dispose()
