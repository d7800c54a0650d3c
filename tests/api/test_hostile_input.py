"""Hostile and malformed requests: always a 4xx that says what was wrong, and nothing stored."""

import json
import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app
from tests.conftest import ClientWith
from tests.helpers import ADMIN, ADMIN_KEY, add_sales, new_store


def stored(client: TestClient) -> int:
    return len(client.get("/api/v1/sales", params={"limit": 1000}, headers=ADMIN).json()["items"])


@pytest.fixture
def small_client(client_with: ClientWith) -> Iterator[TestClient]:
    with client_with(MAX_BODY_BYTES=2048, MAX_UPLOAD_BYTES=4096) as client:
        yield client


def test_a_body_over_the_limit_is_413_with_content_length(small_client: TestClient) -> None:
    _, key = new_store(small_client)
    records = [{"carats": 1, "price": 1}] * 200
    response = small_client.post("/api/v1/sales/batch", json={"records": records}, headers=key)
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["detail"]
    assert stored(small_client) == 0


def test_a_streamed_body_over_the_limit_is_413_without_content_length(
    small_client: TestClient,
) -> None:
    _, key = new_store(small_client)
    body = json.dumps({"records": [{"carats": 1, "price": 1}] * 200}).encode()

    def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    headers = {**key, "Content-Type": "application/json"}
    response = small_client.post("/api/v1/sales/batch", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert stored(small_client) == 0


def test_uploads_have_their_own_larger_limit(small_client: TestClient) -> None:
    _, key = new_store(small_client)
    fits = b"carats,price\n" + b"1,2\n" * 500
    over = b"carats,price\n" + b"1,2\n" * 2000
    ok = small_client.post("/api/v1/sales/import", files={"file": ("a.csv", fits)}, headers=key)
    assert ok.status_code == 201
    big = small_client.post("/api/v1/sales/import", files={"file": ("b.csv", over)}, headers=key)
    assert big.status_code == 413
    assert stored(small_client) == 500


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"carats": 1, "price": 1', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"carats=1&price=2", "application/x-www-form-urlencoded"),
        (b'{"carats": 1, "price": 1}', "text/plain"),
        (b"", "application/json"),
        (b"null", "application/json"),
        (b'{"carats": 1, "price": 1, "carats": "x"}', "application/json"),
        (b'{"carats": 1, "price": "1\\u0000"}', "application/json"),
    ],
)
def test_malformed_bodies_are_4xx(client: TestClient, content: bytes, content_type: str) -> None:
    _, key = new_store(client)
    response = client.post(
        "/api/v1/sales", content=content, headers={**key, "Content-Type": content_type}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert stored(client) == 0


@pytest.mark.parametrize(
    "name", ["", " padded", "tab\there", "nul\x00", "x" * 101, 7, None, "line\nbreak"]
)
def test_store_names_are_bounded_printable_text(client: TestClient, name: object) -> None:
    response = client.post("/api/v1/stores", json={"name": name}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sales/99999999999999999999999",
        "/api/v1/sales?store_id=9223372036854775808",
        "/api/v1/sales?limit=1e3",
        "/api/v1/sales?cursor=99999999999999999999",
        "/api/v1/sales?sold_since=2026-13-45T00:00:00Z",
        "/api/v1/sales?sold_since=1700000000",
        "/api/v1/models/9223372036854775808",
        "/api/v1/predict?carats=1e-400",
        "/api/v1/predict?carats=%00",
    ],
)
def test_out_of_range_parameters_are_422(client: TestClient, path: str) -> None:
    response = client.get(path, headers=ADMIN)
    assert response.status_code == 422, response.text


def test_unknown_paths_and_methods(client: TestClient) -> None:
    assert client.get("/api/v1/nope").status_code == 404
    wrong = client.put("/api/v1/predict", json={})
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, POST"
    assert client.get("/api/v1/sales/import", headers=ADMIN).status_code == 405
    page = client.post("/")
    assert page.status_code == 405
    assert page.headers["Allow"] == "GET, HEAD"


def test_a_huge_idempotency_key_is_refused(client: TestClient) -> None:
    _, key = new_store(client)
    headers = {**key, "Idempotency-Key": "k" * 256}
    response = client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=headers)
    assert response.status_code == 422
    assert stored(client) == 0


def test_a_write_lock_wait_that_times_out_is_503_with_retry_after(sqlite_url: str) -> None:
    settings = Settings(DATABASE_URL=sqlite_url, ADMIN_API_KEY=ADMIN_KEY, SQLITE_BUSY_TIMEOUT_MS=50)
    with TestClient(create_app(settings)) as client:
        _, key = new_store(client)
        blocker = sqlite3.connect(str(make_url(sqlite_url).database), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            response = client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=key)
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert response.json() == {
                "detail": "the database is busy with other writes; retry shortly"
            }
            # Reads go on: WAL readers do not wait for the writer.
            assert client.get("/api/v1/sales", headers=key).status_code == 200
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (
            client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=key).status_code
            == 201
        )


def test_what_a_hostile_tester_found_at_the_edges(client: TestClient) -> None:
    _, key = new_store(client)
    # A body json cannot read for other reasons than its syntax is a 422 like any other.
    for body in (b'{"carats": 1, "price": "\xff"}', b'{"carats": 1, "price": ' + b"9" * 5000 + b"}",
                 b"[" * 100_000 + b"]" * 100_000):  # fmt: skip
        response = client.post(
            "/api/v1/sales", content=body, headers={**key, "Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["type"] == "json_invalid"
    # A carats query is a number as JSON writes one: not 1_0 (ten to float()), nor " 5".
    add_sales(client, key, [(1, "110"), (2, "150"), (3, "191")])
    client.post("/api/v1/train", headers=ADMIN)
    for carats in ("1_0", " 5", "infinity", "\u0665"):
        assert client.get("/api/v1/predict", params={"carats": carats}).status_code == 422
    assert client.get("/api/v1/predict", params={"carats": "2.5e0"}).status_code == 200
    # No redirect built from the Host header for a trailing slash.
    slash = client.get("/api/v1/models/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert slash.status_code == 404


def test_a_quote_that_rounds_to_nothing_is_not_negative_zero() -> None:
    from app.fields import money_text

    assert money_text(-0.001) == "0.00"
    assert money_text(-0.005000001) == "-0.01"
    assert money_text(0.004) == "0.00"
