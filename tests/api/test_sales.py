"""Recording, reading and deleting sales; bad input stores nothing."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.config import Settings
from app.db import Database
from app.lease import ADVISORY_LOCK_KEY
from app.main import create_app
from app.orm import IdempotencyKey, utcnow
from app.services.idempotency import advisory_lock_id
from tests.helpers import ADMIN, THREE_SALES, add_sales, count_sales, new_store


def test_a_store_key_records_its_own_sale_and_money_reads_back_exactly(client: TestClient) -> None:
    store_id, key = new_store(client)
    response = client.post("/api/v1/sales", json={"carats": 2.5, "price": 250.10}, headers=key)
    assert response.status_code == 201, response.text
    sale = response.json()
    assert sale["store_id"] == store_id
    assert sale["price"] == "250.10"
    assert sale["carats"] == 2.5

    again = client.get(f"/api/v1/sales/{sale['id']}", headers=key)
    assert again.status_code == 200
    assert again.json()["price"] == "250.10"


@pytest.mark.parametrize("price", ["0.10", "19999.99", "1", 12345678.9, "99999999.99"])
def test_prices_keep_every_cent(client: TestClient, price: float | str) -> None:
    _, key = new_store(client)
    sale = client.post("/api/v1/sales", json={"carats": 1, "price": price}, headers=key).json()
    stored = client.get(f"/api/v1/sales/{sale['id']}", headers=key).json()
    assert stored["price"] == f"{float(price):.2f}"


def test_admin_must_name_the_store_and_the_store_must_exist(client: TestClient) -> None:
    store_id, _ = new_store(client)
    missing = client.post("/api/v1/sales", json={"carats": 1, "price": 10}, headers=ADMIN)
    assert missing.status_code == 422
    assert missing.json()["detail"] == [
        {"loc": ["body", "store_id"], "msg": "required when using the admin key", "type": "missing"}
    ]
    unknown = client.post(
        "/api/v1/sales", json={"store_id": 999, "carats": 1, "price": 10}, headers=ADMIN
    )
    assert unknown.status_code == 422
    assert "no store with id 999" in unknown.json()["detail"][0]["msg"]
    ok = client.post(
        "/api/v1/sales", json={"store_id": store_id, "carats": 1, "price": 10}, headers=ADMIN
    )
    assert ok.status_code == 201
    assert count_sales(client) == 1


def test_a_store_cannot_write_or_read_another_stores_sales(client: TestClient) -> None:
    first_id, first = new_store(client, "First")
    second_id, second = new_store(client, "Second")
    sale = {"store_id": second_id, "carats": 1, "price": 10}
    assert client.post("/api/v1/sales", json=sale, headers=first).status_code == 403
    theirs = client.post("/api/v1/sales", json=sale, headers=second).json()
    assert client.get(f"/api/v1/sales/{theirs['id']}", headers=first).status_code == 403
    assert client.delete(f"/api/v1/sales/{theirs['id']}", headers=first).status_code == 403
    listing = client.get("/api/v1/sales", params={"store_id": second_id}, headers=first)
    assert listing.status_code == 403
    own = client.get("/api/v1/sales", headers=first).json()
    assert own["items"] == []
    assert first_id != second_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"carats": 0, "price": 10}, "carats"),
        ({"carats": -1, "price": 10}, "carats"),
        ('{"carats": 1e309, "price": 10}', "carats"),
        ('{"carats": 1, "price": 1e400}', "price"),
        ({"carats": "abc", "price": 10}, "carats"),
        ({"carats": 1, "price": 0}, "price"),
        ({"carats": 1, "price": "10.005"}, "price"),
        ({"carats": 1, "price": 1e12}, "price"),
        ({"carats": 1, "price": "NaN"}, "price"),
        ({"carats": 1, "price": 10, "sold_at": "yesterday"}, "sold_at"),
        ({"carats": 1, "price": 10, "sold_at": "1800-01-01T00:00:00Z"}, "sold_at"),
        ({"carats": 1, "price": 10, "store_id": 2**63}, "store_id"),
        ({"carats": 1, "price": 10, "colour": "red"}, "colour"),
        ({"price": 10}, "carats"),
    ],
)
def test_invalid_sales_are_refused_naming_the_field(
    client: TestClient, body: dict[str, object] | str, field: str
) -> None:
    _, key = new_store(client)
    raw = body if isinstance(body, str) else json.dumps(body)
    headers = {**key, "Content-Type": "application/json"}
    response = client.post("/api/v1/sales", content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"][0]["loc"]
    assert count_sales(client) == 0


def test_json_nan_and_malformed_bodies_are_client_errors(client: TestClient) -> None:
    _, key = new_store(client)
    headers = {**key, "Content-Type": "application/json"}
    for raw in ('{"carats": NaN, "price": 10}', '{"carats": 1, "price": Infinity}', "{", "[]"):
        response = client.post("/api/v1/sales", content=raw, headers=headers)
        assert response.status_code == 422, raw
    assert count_sales(client) == 0


def test_a_batch_is_all_or_nothing_and_reports_every_bad_record(client: TestClient) -> None:
    _, key = new_store(client)
    records = [
        {"carats": 1, "price": 100},
        {"carats": -1, "price": 100},
        {"carats": 2, "price": 200},
        {"carats": 3, "price": "1.234"},
    ]
    response = client.post("/api/v1/sales/batch", json={"records": records}, headers=key)
    assert response.status_code == 422
    locations = [tuple(e["loc"][:3]) for e in response.json()["detail"]]
    assert ("body", "records", 1) in locations
    assert ("body", "records", 3) in locations
    assert count_sales(client) == 0

    good = client.post("/api/v1/sales/batch", json={"records": records[::2]}, headers=key)
    assert good.status_code == 201
    assert good.json()["count"] == 2
    assert [s["price"] for s in good.json()["items"]] == ["100.00", "200.00"]
    assert count_sales(client) == 2


def test_a_batch_with_an_unknown_store_stores_nothing(client: TestClient) -> None:
    store_id, _ = new_store(client)
    records = [
        {"store_id": store_id, "carats": 1, "price": 1},
        {"store_id": 77, "carats": 1, "price": 1},
    ]
    response = client.post("/api/v1/sales/batch", json={"records": records}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "records", 1, "store_id"],
            "msg": "no store with id 77",
            "type": "value_error",
        }
    ]
    assert count_sales(client) == 0


def test_batch_size_is_limited(settings, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    _, key = new_store(client)
    records = [{"carats": 1, "price": 1}] * (settings.MAX_BATCH_RECORDS + 1)
    response = client.post("/api/v1/sales/batch", json={"records": records}, headers=key)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "records"],
            "msg": "List should have at most 10000 items after validation, not 10001",
            "type": "too_long",
        }
    ]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["SaleBatch"]["properties"]["records"]["maxItems"] == 10_000
    empty = client.post("/api/v1/sales/batch", json={"records": []}, headers=key)
    assert empty.status_code == 422
    assert count_sales(client) == 0


def test_listing_filters_and_pages_with_a_cursor(client: TestClient) -> None:
    first_id, first = new_store(client, "First")
    _, second = new_store(client, "Second")
    now = datetime.now(UTC)
    records = [
        {"carats": i + 1, "price": 10 * (i + 1), "sold_at": (now - timedelta(days=i)).isoformat()}
        for i in range(7)
    ]
    client.post("/api/v1/sales/batch", json={"records": records}, headers=first)
    client.post("/api/v1/sales/batch", json={"records": records[:2]}, headers=second)

    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3, "store_id": first_id, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/sales", params=params, headers=ADMIN).json()
        seen += [s["id"] for s in page["items"]]
        # A sale arriving mid-listing lands after the cursor: no page shifts.
        client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=second)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7
    assert seen == sorted(seen)

    since = (now - timedelta(days=2, hours=1)).isoformat()
    recent = client.get(
        "/api/v1/sales", params={"store_id": first_id, "sold_since": since}, headers=ADMIN
    ).json()
    assert [s["carats"] for s in recent["items"]] == [1.0, 2.0, 3.0]
    until = (now - timedelta(days=5, hours=1)).isoformat()
    old = client.get("/api/v1/sales", params={"sold_until": until}, headers=first).json()
    assert [s["carats"] for s in old["items"]] == [7.0]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 5000}, {"cursor": "abc"}, {"store_id": -1}, {"sold_since": "x"}],
)
def test_bad_listing_parameters_are_422(client: TestClient, params: dict[str, object]) -> None:
    response = client.get("/api/v1/sales", params=params, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_get_and_delete_one_sale(client: TestClient) -> None:
    _, key = new_store(client)
    sale = client.post("/api/v1/sales", json={"carats": 1, "price": 5}, headers=key).json()
    assert client.get("/api/v1/sales/999999", headers=key).status_code == 404
    assert client.delete(f"/api/v1/sales/{sale['id']}", headers=key).status_code == 204
    assert client.get(f"/api/v1/sales/{sale['id']}", headers=key).status_code == 404
    assert client.delete(f"/api/v1/sales/{sale['id']}", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/sales/0", headers=key).status_code == 422


def test_sales_need_a_key(client: TestClient) -> None:
    anonymous = client.post("/api/v1/sales", json={"carats": 1, "price": 1})
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("ApiKey")
    wrong = client.get("/api/v1/sales", headers={"X-API-Key": "jf_store_nope"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "unknown or revoked API key"


def test_idempotency_key_replays_and_refuses_a_different_body(client: TestClient) -> None:
    _, key = new_store(client)
    headers = {**key, "Idempotency-Key": "sale-0001"}
    first = client.post("/api/v1/sales", json={"carats": 1, "price": 10}, headers=headers)
    again = client.post("/api/v1/sales", json={"carats": 1, "price": 10}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = client.post("/api/v1/sales", json={"carats": 2, "price": 10}, headers=headers)
    assert changed.status_code == 422
    assert changed.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    # The same sale written another way is the same request: 10, 10.0 and "10.00".
    for same in (10.0, "10.00", "10"):
        replay = client.post("/api/v1/sales", json={"carats": 1, "price": same}, headers=headers)
        assert replay.status_code == 201, replay.text
        assert replay.headers["Idempotent-Replayed"] == "true"
    assert count_sales(client) == 1


def test_idempotency_keys_are_scoped_to_the_caller(client: TestClient) -> None:
    _, first = new_store(client, "First")
    _, second = new_store(client, "Second")
    body = {"records": [{"carats": 1, "price": 10}]}
    a = client.post("/api/v1/sales/batch", json=body, headers={**first, "Idempotency-Key": "k"})
    b = client.post("/api/v1/sales/batch", json=body, headers={**second, "Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 201
    assert a.json()["items"][0]["store_id"] != b.json()["items"][0]["store_id"]
    assert count_sales(client) == 2


def test_a_refused_request_does_not_burn_its_idempotency_key(client: TestClient) -> None:
    _, key = new_store(client)
    headers = {**key, "Idempotency-Key": "retry-me"}
    bad = {"records": [{"store_id": 999, "carats": 1, "price": 1}]}
    assert client.post("/api/v1/sales/batch", json=bad, headers=headers).status_code == 403
    good = {"records": [{"carats": 1, "price": 1}]}
    assert client.post("/api/v1/sales/batch", json=good, headers=headers).status_code == 201


def test_an_idempotency_key_in_flight_elsewhere_is_409(pg_settings: Settings) -> None:
    """PostgreSQL: while another transaction holds the key, a retry is told to come back.
    (SQLite serialises writers, so there a retry waits for the first and replays it.)"""
    with TestClient(create_app(pg_settings)) as client:
        store_id, key = new_store(client)
        headers = {**key, "Idempotency-Key": "in-flight"}
        sale = {"carats": 1, "price": 10}
        db = Database(pg_settings)
        with db.session(write=True) as session:
            held = advisory_lock_id(f"store:{store_id}", "in-flight")
            session.execute(select(func.pg_advisory_xact_lock(held)))
            busy = client.post("/api/v1/sales", json=sale, headers=headers)
            assert busy.status_code == 409
            assert busy.headers["Retry-After"] == "1"
        assert client.post("/api/v1/sales", json=sale, headers=headers).status_code == 201
        assert count_sales(client) == 1
        db.dispose()


def test_no_idempotency_key_can_be_made_to_hold_the_training_lock(pg_settings: Settings) -> None:
    """PostgreSQL: a key whose hashtextextended is the training lock's id (found by running
    that hash backwards) is not taken for training's lock, nor training for it."""
    crafted = "vdjqfybyfvpkcdyadftnqTfB6yk,D"
    db = Database(pg_settings)
    with db.session() as session:
        assert session.scalar(select(func.hashtextextended(f"admin\x1f{crafted}", 0))) == (
            ADVISORY_LOCK_KEY
        )
    with TestClient(create_app(pg_settings)) as client, db.session() as training:
        store_id, _ = new_store(client)
        assert training.scalar(select(func.pg_try_advisory_xact_lock(ADVISORY_LOCK_KEY)))
        sale = {"store_id": store_id, "carats": 1, "price": 10}
        answer = client.post(
            "/api/v1/sales", json=sale, headers={**ADMIN, "Idempotency-Key": crafted}
        )
        assert answer.status_code == 201, answer.text
    db.dispose()


def test_idempotency_keys_expire(settings, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    _, key = new_store(client)
    headers = {**key, "Idempotency-Key": "old-key"}
    first = client.post("/api/v1/sales", json={"carats": 1, "price": 10}, headers=headers)
    db = Database(settings)
    with db.session(write=True) as session:
        expired = utcnow() - timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS, seconds=1)
        session.execute(update(IdempotencyKey).values(created_at=expired))
    again = client.post("/api/v1/sales", json={"carats": 1, "price": 10}, headers=headers)
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert count_sales(client) == 2
    db.dispose()


def test_ids_are_never_handed_out_twice(client: TestClient) -> None:
    """A deleted newest sale or version leaves its id unused: a retried DELETE, an
    Idempotency-Key's replay or a cached model then cannot name another row."""
    _, key = new_store(client)
    first = client.post("/api/v1/sales", json={"carats": 3, "price": "333.33"}, headers=key)
    assert client.delete(f"/api/v1/sales/{first.json()['id']}", headers=key).status_code == 204
    second = client.post("/api/v1/sales", json={"carats": 7, "price": "777.77"}, headers=key)
    assert second.json()["id"] > first.json()["id"]
    assert client.delete(f"/api/v1/sales/{first.json()['id']}", headers=key).status_code == 404
    add_sales(client, key, THREE_SALES)
    old = client.post("/api/v1/train", headers=ADMIN).json()["version"]
    newest = client.post("/api/v1/train", json={"activate": False}, headers=ADMIN).json()
    assert client.delete(f"/api/v1/models/{newest['version']}", headers=ADMIN).status_code == 204
    again = client.post("/api/v1/train", headers=ADMIN).json()["version"]
    assert again > newest["version"] > old
