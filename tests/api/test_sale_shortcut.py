"""A single sale written the usual way is taken by the shortcut (app/shortcuts.py), any other
by the route, and both answer alike: the same statuses, errors and stored sales, and an
Idempotency-Key used on one path replays on the other."""

import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.schemas.sales import SaleCreate, SaleRecord
from tests.api.test_batch_validation import records
from tests.helpers import count_sales, new_store

JSON = {"Content-Type": "application/json"}
# JSON whitespace after the body: past the shortcut's 4 KiB, so the route reads it.
PAD = " " * 5000
SALE = '{"carats": 2.5, "price": "250.10", "sold_at": "2026-11-20T14:30:00Z"}'


@st.composite
def good_records(draw: st.DrawFn) -> str:
    """A record the route stores, written one of the ways clients write them (records() mostly
    draws records with some fault)."""
    carats = draw(st.sampled_from(["1", "2.5", "0.001", "10000", "1e3", "1E-3", "0.1e1"]))
    price = draw(
        st.sampled_from(["1", "10.5", "10.500", "1e2", '"250.10"', '"250.1"', "99999999.99"])
    )
    parts = [f'"carats": {carats}', f'"price": {price}']
    if draw(st.booleans()):
        moment = draw(
            st.sampled_from(['"2026-11-20t14:30:00.123456z"', '"2099-12-31T23:59:59-00:30"'])
        )
        parts.append(f'"sold_at": {moment}')
    return "{" + ", ".join(draw(st.permutations(parts))) + "}"


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[SaleCreate]:
    """The sales the route handed to the writer (only the route builds a record from a
    validated SaleCreate)."""
    seen: list[SaleCreate] = []
    build = SaleRecord.of

    def of(sale: SaleCreate) -> SaleRecord:
        seen.append(sale)
        return build(sale)

    monkeypatch.setattr(SaleRecord, "of", staticmethod(of))
    return seen


def post(client: TestClient, text: str, headers: dict[str, str]) -> httpx.Response:
    return client.post("/api/v1/sales", content=text.encode(), headers={**JSON, **headers})


def answered(response: httpx.Response) -> tuple[int, Any]:
    """What a client is told, but for what differs from one stored sale to the next."""
    body = response.json()
    if response.status_code == 201:
        if body["sold_at"] == body["created_at"]:  # no sold_at given: the time it was stored
            body["sold_at"] = "now"
        body = {k: v for k, v in body.items() if k not in ("id", "created_at")}
    else:
        body = body["detail"]
    return response.status_code, body


def test_a_plain_sale_takes_the_shortcut_and_any_other_the_route(
    client: TestClient, routed: list[SaleCreate]
) -> None:
    _, key = new_store(client)
    quick = post(client, SALE, key)
    assert quick.status_code == 201, quick.text
    assert routed == []
    assert answered(post(client, SALE + PAD, key)) == answered(quick)
    assert len(routed) == 1
    # A header given twice is the route's to read (it takes the first).
    twice = client.post(
        "/api/v1/sales",
        content=SALE.encode(),
        headers=[("Content-Type", "application/json"), *key.items(), ("X-API-Key", "other")],
    )
    assert answered(twice) == answered(quick)
    assert len(routed) == 2
    assert count_sales(client) == 3
    # The shortcut's answers are counted and logged under the route's template.
    metrics = client.get("/metrics").text
    assert 'method="POST",route="/api/v1/sales",status="201"} 3.0' in metrics
    assert 'jewelry_sales_ingested_total{via="single"} 3.0' in metrics


def test_errors_the_writer_finds_are_answered_as_the_route_answers_them(
    client: TestClient, routed: list[SaleCreate]
) -> None:
    store_id, key = new_store(client)
    unknown = post(client, SALE, {"X-API-Key": "jf_store_unknown"})
    assert unknown.status_code == 401
    assert unknown.json() == {"detail": "unknown or revoked API key"}
    assert unknown.headers["WWW-Authenticate"].startswith("ApiKey")
    another = post(client, '{"store_id": 9999, "carats": 1, "price": 1}', key)
    assert another.status_code == 403
    assert another.json()["detail"] == f"this key belongs to store {store_id}, not store 9999"
    assert routed == []
    assert count_sales(client) == 0


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(record=st.one_of(good_records(), records()), keyed=st.booleans())
def test_the_shortcut_answers_as_the_route_does(
    client: TestClient, record: str, keyed: bool
) -> None:
    _, key = new_store(client, f"Store {uuid.uuid4().hex}")

    def headers() -> dict[str, str]:
        return {**key, "Idempotency-Key": uuid.uuid4().hex} if keyed else key

    first, second = headers(), headers()
    quick = post(client, record, first)
    assert answered(quick) == answered(post(client, record + PAD, second))
    if keyed and quick.status_code == 201:
        # A retry that the other path reads is the same request under the same key.
        for retry, same_key in ((record + PAD, first), (record, second)):
            again = post(client, retry, same_key)
            assert again.status_code == 201
            assert again.headers["Idempotent-Replayed"] == "true"
        assert post(client, record + PAD, first).json() == quick.json()
