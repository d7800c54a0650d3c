"""Importing sales from a CSV file: every line checked, every sale stored or none."""

import io

import pytest
from fastapi.testclient import TestClient

from tests.helpers import ADMIN, count_sales, new_store


def upload(client: TestClient, headers: dict[str, str], content: bytes):  # type: ignore[no-untyped-def]
    files = {"file": ("sales.csv", io.BytesIO(content), "text/csv")}
    return client.post("/api/v1/sales/import", files=files, headers=headers)


def test_csv_import_stores_every_row(client: TestClient) -> None:
    store_id, key = new_store(client)
    text = "carats,price,sold_at\n1.5,150.10,2026-01-02T03:04:05Z\n2,250,\n3.25,300.5,2026-02-01\n"
    response = upload(client, key, text.encode())
    assert response.status_code == 201, response.text
    assert response.json() == {"count": 3}
    items = client.get("/api/v1/sales", headers=key).json()["items"]
    assert [(s["carats"], s["price"], s["store_id"]) for s in items] == [
        (1.5, "150.10", store_id),
        (2.0, "250.00", store_id),
        (3.25, "300.50", store_id),
    ]
    assert items[0]["sold_at"] == "2026-01-02T03:04:05Z"


def test_csv_import_lists_every_bad_line_and_stores_nothing(client: TestClient) -> None:
    _, key = new_store(client)
    text = "carats,price\n1,100\nabc,100\n2,-5\n3,10.999\n0,1\n4,40\n"
    response = upload(client, key, text.encode())
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(e["loc"][1], e["loc"][2]) for e in detail] == [
        (3, "carats"),
        (4, "price"),
        (5, "price"),
        (6, "carats"),
    ]
    assert count_sales(client) == 0


def test_csv_import_with_admin_key_needs_known_store_ids(client: TestClient) -> None:
    store_id, _ = new_store(client)
    text = f"carats,price,store_id\n1,100,{store_id}\n2,200,999\n3,300,\n"
    response = upload(client, ADMIN, text.encode())
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["file", 3, "store_id"], "msg": "no store with id 999", "type": "value_error"},
        {
            "loc": ["file", 4, "store_id"],
            "msg": "required when using the admin key",
            "type": "missing",
        },
    ]
    assert count_sales(client) == 0


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
        b"",
        b"carats,price\n",
        b"weight,cost\n1,2\n",
        b'carats,price\n"1,2\n',
        "carats,price\n1,\u00e9\n".encode("latin-1"),
    ],
)
def test_csv_garbage_is_a_client_error(client: TestClient, content: bytes) -> None:
    _, key = new_store(client)
    response = upload(client, key, content)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert count_sales(client) == 0
