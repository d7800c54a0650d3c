"""Single sales committed in groups: each request gets its own answer, and a bad one never
fails the others or leaves anything behind."""

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.errors import AppError
from app.group_commit import GroupCommit
from app.orm import IdempotencyKey, Sale, Store
from app.schemas.sales import SaleCreate, SaleRecord
from app.services.idempotency import Answer
from app.services.sales import SingleSale, record_single_sales
from app.services.stores import create_store
from tests.helpers import ADMIN, ADMIN_KEY, new_store


def sale(carats: float, price: str, store_id: int | None = None) -> SaleRecord:
    return SaleRecord.of(SaleCreate(carats=carats, price=Decimal(price), store_id=store_id))


def stored(db: Database) -> list[tuple[int, float, int]]:
    with db.session() as session:
        rows = session.execute(select(Sale.store_id, Sale.carats, Sale.price_cents))
        return sorted((s, c, p) for s, c, p in rows)


def status(outcome: Answer | Exception) -> int:
    if isinstance(outcome, Answer):
        return outcome.status_code
    assert isinstance(outcome, AppError), repr(outcome)
    return outcome.status_code


def test_one_group_answers_each_request_on_its_own(settings: Settings) -> None:
    db = Database(settings)
    with db.session(write=True) as session:
        (store, key), (other, _) = create_store(session, "Own"), create_store(session, "Other")
        own, another = store.id, other.id
    with db.session(write=True) as session:
        [earlier] = record_single_sales(session, settings, [SingleSale(key, sale(9, "9"), "old")])
    assert status(earlier) == 201

    singles = [
        SingleSale(key, sale(1, "10.00"), None),  # 0: stored
        SingleSale("jf_store_unknown", sale(2, "20"), None),  # 1: 401
        SingleSale(key, sale(3, "30", another), None),  # 2: another store's: 403
        SingleSale(ADMIN_KEY, sale(4, "40"), None),  # 3: the admin names no store: 422
        SingleSale(ADMIN_KEY, sale(5, "50", 999), None),  # 4: no such store: 422
        SingleSale(ADMIN_KEY, sale(6, "60", another), None),  # 5: stored
        SingleSale(key, sale(7, "70"), "k1"),  # 6: stored, claims k1
        SingleSale(key, sale(7, "70.00"), "k1"),  # 7: the same request: replays 6
        SingleSale(key, sale(8, "70"), "k1"),  # 8: k1 with another body: 422
        SingleSale(key, sale(11, "11", another), "k2"),  # 9: 403, gives k2 back
        SingleSale(key, sale(12, "12"), "k2"),  # 10: so k2 is free: stored
        SingleSale(key, sale(9, "9"), "old"),  # 11: replays the earlier group's answer
        SingleSale(ADMIN_KEY, sale(13, "13", own), "k1"),  # 12: the admin's own k1: stored
    ]
    with db.session(write=True) as session:
        outcomes = record_single_sales(session, settings, singles)

    assert [status(o) for o in outcomes] == [
        201, 401, 403, 422, 422, 201, 201, 201, 422, 403, 201, 201, 201
    ]  # fmt: skip
    answers = [o for o in outcomes if isinstance(o, Answer)]
    assert [o.replayed for o in answers] == [False, False, False, True, False, True, False]
    assert outcomes[7] == Answer(201, outcomes[6].body, replayed=True)  # type: ignore[union-attr]
    assert outcomes[11] == Answer(201, earlier.body, replayed=True)  # type: ignore[union-attr]
    bad_key = outcomes[8]
    assert isinstance(bad_key, AppError)
    assert bad_key.detail[0]["loc"] == ["header", "Idempotency-Key"]
    assert outcomes[4].detail[0]["loc"] == ["body", "store_id"]  # type: ignore[union-attr]
    body = json.loads(outcomes[10].body)  # type: ignore[union-attr]
    assert (body["store_id"], body["carats"], body["price"]) == (own, 12.0, "12.00")

    assert stored(db) == sorted(
        [
            *[(own, 9, 900), (own, 1, 1000), (another, 6, 6000)],
            *[(own, 7, 7000), (own, 12, 1200), (own, 13, 1300)],
        ]
    )
    with db.session() as session:
        keys = session.execute(
            select(IdempotencyKey.scope, IdempotencyKey.key, IdempotencyKey.status_code)
        ).all()
    assert sorted(keys) == [
        ("admin", "k1", 201),
        (f"store:{own}", "k1", 201),
        (f"store:{own}", "k2", 201),
        (f"store:{own}", "old", 201),
    ]
    db.dispose()


def test_what_each_request_is_answered_is_what_a_read_gives(client: TestClient) -> None:
    _, key = new_store(client)
    created = client.post(
        "/api/v1/sales",
        json={"carats": 1.25, "price": "99.9", "sold_at": "2026-03-01T10:00:00.5+02:00"},
        headers=key,
    )
    assert created.status_code == 201, created.text
    read = client.get(f"/api/v1/sales/{created.json()['id']}", headers=key)
    assert read.json() == created.json()
    assert created.json()["sold_at"] == "2026-03-01T08:00:00.500000Z"


def test_concurrent_requests_each_get_their_answer_and_good_ones_are_stored_once(
    client: TestClient,
) -> None:
    store_id, key = new_store(client)
    other_id, _ = new_store(client, "Other")
    # Per Idempotency-Key: a sale, its retry, and a reuse of the key with another sale. Also
    # requests with an unknown key, and ones naming another store: refused, storing nothing.
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
    for k in range(20):
        headers = {**key, "Idempotency-Key": f"key-{k}"}
        sale_k = {"carats": 1 + k, "price": f"{100 + k}.00"}
        requests += [
            ("sale", headers, sale_k),
            ("retry", headers, {**sale_k, "price": f"{100 + k}"}),
            ("reuse", headers, {"carats": 101 + k, "price": "1.00"}),
            ("unknown", {"X-API-Key": f"jf_store_nobody-{k}"}, sale_k),
            ("another", {**key, "Idempotency-Key": f"x-{k}"}, {**sale_k, "store_id": other_id}),
        ]

    def post(request: tuple[str, dict[str, str], dict[str, Any]]) -> Any:
        return client.post("/api/v1/sales", json=request[2], headers=request[1])

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(post, requests))

    created: dict[str, dict[str, Any]] = {}
    for (kind, headers, _), response in zip(requests, responses, strict=True):
        if kind == "unknown":
            assert response.status_code == 401, response.text
            continue
        if kind == "another":
            assert response.status_code == 403, response.text
            continue
        key_used = headers["Idempotency-Key"]
        if response.status_code == 422:  # the other body claimed the key first
            assert response.json()["detail"][0]["type"] == "idempotency_key_reused"
            continue
        assert response.status_code == 201, response.text
        if "Idempotent-Replayed" not in response.headers:
            assert key_used not in created, "two requests with one key both stored a sale"
            created[key_used] = response.json()
    for (_, headers, _), response in zip(requests, responses, strict=True):
        if response.headers.get("Idempotent-Replayed"):
            assert response.json() == created[headers["Idempotency-Key"]]
    assert len(created) == 20
    listed = client.get("/api/v1/sales", params={"limit": 1000}, headers=ADMIN).json()["items"]
    assert sorted(listed, key=lambda s: s["id"]) == sorted(created.values(), key=lambda s: s["id"])
    assert {s["store_id"] for s in listed} == {store_id}


def test_an_unexpected_error_is_the_culprits_alone(settings: Settings) -> None:
    db = Database(settings)

    def add_stores(session: Session, names: Sequence[str]) -> list[int | Exception]:
        ids: list[int | Exception] = []
        for name in names:
            session.add(Store(name=name))
            session.flush()  # a duplicate name fails here: the database's check, not ours
            ids.append(1)
        return ids

    async def main() -> list[int | BaseException]:
        writer = GroupCommit(db, add_stores)
        outcomes = await asyncio.gather(
            *(writer.run(name) for name in ("X", "Y", "X", "Z")), return_exceptions=True
        )
        await writer.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert outcomes[:2] == [1, 1] and outcomes[3] == 1
    assert isinstance(outcomes[2], IntegrityError)
    with db.session() as session:
        assert session.scalars(select(Store.name).order_by(Store.id)).all() == ["X", "Y", "Z"]
    db.dispose()


def test_a_database_in_trouble_fails_the_whole_group_and_stores_nothing(
    settings: Settings,
) -> None:
    db = Database(settings)

    def add_stores(session: Session, names: Sequence[str]) -> list[int | Exception]:
        for name in names:
            session.add(Store(name=name))
        session.flush()
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    async def main() -> list[int | BaseException]:
        writer = GroupCommit(db, add_stores)
        outcomes = await asyncio.gather(
            *(writer.run(name) for name in ("P", "Q")), return_exceptions=True
        )
        await writer.close()
        return outcomes

    assert all(isinstance(o, OperationalError) for o in asyncio.run(main()))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Store)) == 0
    db.dispose()


@pytest.mark.parametrize("headers", [{}, ADMIN])
def test_a_request_without_a_good_key_is_refused_before_its_body(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post("/api/v1/sales", json={"carats": "x"}, headers=headers)
    assert response.status_code == (401 if not headers else 422), response.text


def test_the_writers_of_processes_take_turns_on_a_sqlite_file(sqlite_url: str) -> None:
    # Two Databases open the lock file as two processes do: one waits while the other writes.
    settings = Settings(DATABASE_URL=sqlite_url, ADMIN_API_KEY=ADMIN_KEY)
    first, second = Database(settings), Database(settings)
    holding, waited = threading.Event(), threading.Event()
    order: list[str] = []

    def other() -> None:
        holding.wait(5)
        with second.writers_turn():
            order.append("second")
        waited.set()

    thread = threading.Thread(target=other)
    thread.start()
    with first.writers_turn():
        holding.set()
        assert not waited.wait(0.3)  # the second is still waiting
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]


def test_a_lock_file_that_cannot_be_opened_leaves_the_order_to_sqlite(
    sqlite_url: str, tmp_path: Path
) -> None:
    db = Database(Settings(DATABASE_URL=sqlite_url, ADMIN_API_KEY=ADMIN_KEY))
    db._turns = tmp_path / "no such directory" / "jewelry.db-writers"
    with db.writers_turn(), db.session(write=True) as session:
        assert session.execute(select(func.count()).select_from(Sale)).scalar_one() == 0


def test_a_writer_goes_on_without_its_turn_after_the_busy_timeout(sqlite_url: str) -> None:
    # A process stopped while it held its turn must not stop the others' writes for good.
    settings = Settings(
        DATABASE_URL=sqlite_url, ADMIN_API_KEY=ADMIN_KEY, SQLITE_BUSY_TIMEOUT_MS=200
    )
    stuck, db = Database(settings), Database(settings)
    with stuck.writers_turn():
        started = time.monotonic()
        with db.writers_turn(), db.session(write=True) as session:
            session.execute(select(func.count()).select_from(Sale)).scalar_one()
        assert 0.2 <= time.monotonic() - started < 5
