"""The batch's fast path: records written the usual way are read without a model each, and the
answer is written without one, but what is accepted, what is stored, what is answered and
every error stay SaleBatch's."""

import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as explore
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from app.config import Settings
from app.db import Database
from app.fields import to_cents
from app.orm import Sale, Store, UTCDateTime
from app.schemas.sales import SaleBatch, SaleBatchResult, SalePublic, ValidBatch, fast_record
from app.services.sales import insert_rows
from tests.helpers import ADMIN, count_sales, new_store

JSON = {"Content-Type": "application/json"}

# JSON literals of each field, good and bad, as clients write them.
CARATS = ["1", "2.5", "0.001", "0.0009999", "10000", "10000.000001", "1e3", "1E-3", "-1", "0"]
CARATS += ["true", "null", '"1.5"', "1" + "0" * 400, "1e400", "NaN", "Infinity", "0.1e1"]
PRICES = ["1", "0", "-1", "10.5", "10.50", "10.505", "10.500", "1e2", "1.5E1", "2.5e-1"]
PRICES += ['"250.10"', '"250.1"', '"250.100"', '"0.00"', '"1e2"', '" 1"', '"99999999.99"']
PRICES += ["99999999.99", "99999999.989999999", "100000000", '"100000000"', "true", "null"]
PRICES += ["1" + "0" * 400, "1e-400", "NaN", '"\u0661"']  # an Arabic-Indic one
STORE_IDS = ["1", "7", "0", "-1", "1.0", "1.5", "true", '"1"', "null", str(2**53), "1e2"]
SOLD_AT = ['"2026-11-20T14:30:00Z"', '"2026-11-20t14:30:00.123456z"', '"1900-01-01T00:00:00Z"']
SOLD_AT += ['"1900-01-01T00:30:00+01:00"', '"2099-12-31T23:59:59-00:30"', '"2026-02-29T00:00:00Z"']
SOLD_AT += ['"2026-01-01T00:00:00+00:60"', '"2026-01-01T24:00:00Z"', '"2026-01-01"', "null", "1"]
SOLD_AT += ['"2026-01-01T00:00:00.1234567+05:45"', '"2026-01-01T00:00:00"']

FIELDS = {"carats": CARATS, "price": PRICES, "store_id": STORE_IDS, "sold_at": SOLD_AT}


@st.composite
def records(draw: st.DrawFn) -> str:
    """A record as JSON text: each field left out or written one of the ways above."""
    parts = [
        f'"{name}": {draw(st.sampled_from(literals))}'
        for name, literals in FIELDS.items()
        if draw(st.booleans()) or name in ("carats", "price")
    ]
    if draw(st.integers(0, 9)) == 0:
        parts.append('"extra": 1')
    return "{" + ", ".join(draw(st.permutations(parts))) + "}"


# Sales as stored: carats, cents and a time in the years a sale may have.
SALES = st.lists(
    st.tuples(
        st.floats(0.001, 10_000),
        st.integers(1, 9_999_999_999),
        st.datetimes(datetime(1900, 1, 2), datetime(2099, 12, 30), timezones=st.just(UTC)),
    ),
    min_size=1,
    max_size=20,
)


def read(text: str) -> Any:
    # As the route reads a body with a price: numbers with a fraction as Decimal literals.
    return json.loads(text, parse_float=Decimal)


def outcome(adapter: TypeAdapter[Any], body: Any) -> Any:
    try:
        batch = adapter.validate_python(body)
    except ValidationError as exc:
        return exc.errors(include_url=False, include_context=False)
    model = batch.model() if isinstance(batch, ValidBatch) else batch
    # Decimal("1.0") == Decimal("1.00"): the text keeps what the answer and the key show.
    return [[str(value) for value in record] for record in model.records]


@given(st.lists(records(), min_size=1, max_size=4))
def test_a_batch_read_the_fast_way_is_the_batch_sale_batch_reads(texts: list[str]) -> None:
    body = read('{"records": [' + ", ".join(texts) + "]}")
    for written in texts:
        record = read(written)
        if (fast := fast_record(record)) is not None:
            model = SaleBatch.model_validate({"records": [record]}).records[0]
            read_as = (model.carats, to_cents(model.price), model.store_id, model.sold_at)
            assert [repr(v) for v in fast] == [repr(v) for v in read_as]
            # What identifies the record under an Idempotency-Key.
            assert fast.model().model_dump_json() == model.model_dump_json()
    assert outcome(TypeAdapter(ValidBatch), body) == outcome(TypeAdapter(SaleBatch), body)


@given(SALES, st.datetimes(timezones=st.just(UTC)))
def test_a_batch_answers_with_the_bytes_its_model_writes(
    sales: list[tuple[float, int, datetime]], now: datetime
) -> None:
    rows = [
        {"store_id": 3, "carats": c, "price_cents": p, "sold_at": t, "created_at": now}
        for c, p, t in sales
    ]
    ids = range(41, 41 + len(rows))
    items = [SalePublic.from_row(Sale(id=i, **row)) for i, row in zip(ids, rows, strict=True)]
    expected = SaleBatchResult(count=len(items), items=items).model_dump_json()
    assert SaleBatchResult.json_of(ids, rows) == expected
    # And each on its own, as a single sale is answered.
    for sale_id, row, item in zip(ids, rows, items, strict=True):
        assert SalePublic.json_of(sale_id, row) == item.model_dump_json()


@explore(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=20)
@given(SALES, st.datetimes(datetime(1990, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)))
def test_the_fast_insert_stores_what_the_orm_reads_back(
    settings: Settings, sales: list[tuple[float, int, datetime]], now: datetime
) -> None:
    db = Database(settings)
    with db.session(write=True) as session:
        store = Store(name=f"store {uuid.uuid4().hex}")
        session.add(store)
        session.flush()
        rows = [
            {"store_id": store.id, "carats": c, "price_cents": p, "sold_at": t, "created_at": now}
            for c, p, t in sales
        ]
        ids = list(insert_rows(session, rows))
    with db.session() as session:
        stored = {s.id: s for s in session.scalars(select(Sale).where(Sale.id.in_(ids)))}
    db.dispose()
    assert [
        (s.store_id, s.carats, s.price_cents, s.sold_at, s.created_at)
        for s in (stored[i] for i in ids)
    ] == [(r["store_id"], r["carats"], r["price_cents"], r["sold_at"], now) for r in rows]


def test_an_error_of_the_fast_insert_is_raised_as_sqlalchemys(settings: Settings) -> None:
    """The rows go in past SQLAlchemy's compiler (executemany, COPY), not past its error
    handling: the app answers SQLAlchemy's errors (a 503 for a database gone), not a
    driver's (a 500)."""
    now = datetime.now(UTC)
    row = {"store_id": 999_999, "carats": 1.0, "price_cents": 100, "sold_at": now}
    db = Database(settings)
    with pytest.raises(IntegrityError), db.session(write=True) as session:
        insert_rows(session, [{**row, "created_at": now}])
    db.dispose()


def test_a_connection_lost_in_the_copy_is_dropped_from_the_pool(pg_settings: Settings) -> None:
    """PostgreSQL: the COPY's connection, killed under it, is a 503 (an OperationalError) and
    is not handed out again."""
    now = datetime.now(UTC)
    db = Database(pg_settings)
    with db.session(write=True) as session:
        store = Store(name="Store")
        session.add(store)
        session.flush()
        row = {"store_id": store.id, "carats": 1.0, "price_cents": 100, "sold_at": now}
    with pytest.raises(OperationalError) as lost, db.session(write=True) as session:
        pid = session.scalar(text("SELECT pg_backend_pid()"))
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        insert_rows(session, [{**row, "created_at": now}])
    assert lost.value.connection_invalidated
    with db.session(write=True) as session:  # the pool gives a working connection
        assert insert_rows(session, [{**row, "created_at": now}])
    db.dispose()


def test_sqlite_stores_the_times_of_a_batch_as_the_orm_writes_them(sqlite_url: str) -> None:
    """The text SQLite makes of them, which sorts and compares as the times do."""
    rng = random.Random(7)
    west = timezone(timedelta(hours=-9, minutes=-30))
    moments = [
        datetime(1900, 1, 1, tzinfo=UTC),
        datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2099, 12, 31, 14, 29, 59, 999_999, tzinfo=west),
    ]
    start = datetime(1900, 1, 1, 9, 30, tzinfo=west)
    moments += [
        start
        + timedelta(seconds=rng.randrange(199 * 365 * 86_400), microseconds=rng.randrange(10**6))
        for _ in range(2_000)
    ]
    rows = [
        {"store_id": 1, "carats": 1.0, "price_cents": 1, "sold_at": m, "created_at": m}
        for m in moments
    ]
    db = Database(Settings(DATABASE_URL=sqlite_url))
    with db.session(write=True) as session:
        session.add(Store(name="Store"))
        session.flush()
        insert_rows(session, rows)
    with db.session() as session:
        stored = session.execute(text("SELECT sold_at, created_at FROM sales ORDER BY id")).all()
    db.dispose()
    dialect = sqlite.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    assert [tuple(row) for row in stored] == [(bind(m), bind(m)) for m in moments]


def test_a_batch_read_either_way_is_one_request_under_its_key(client: TestClient) -> None:
    store_id, _ = new_store(client)
    headers = {**ADMIN, **JSON, "Idempotency-Key": "batch-1"}
    fast = f'{{"records": [{{"store_id": {store_id}, "carats": 1.5, "price": "10.00"}}]}}'
    first = client.post("/api/v1/sales/batch", content=fast, headers=headers)
    assert first.status_code == 201, first.text
    # 1.0 is an id only SaleBatch reads (the fast path leaves it to it), 10 the same price.
    full = f'{{"records": [{{"store_id": {store_id}.0, "carats": 1.5, "price": 10}}]}}'
    again = client.post("/api/v1/sales/batch", content=full, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert count_sales(client) == 1


@pytest.mark.parametrize("carats", ["1" + "0" * 400, "1e400", "true", '"2"'])
def test_a_bad_record_in_a_long_batch_is_named_and_nothing_is_stored(
    client: TestClient, carats: str
) -> None:
    _, key = new_store(client)
    good = '{"carats": 1.25, "price": "10.10", "sold_at": "2026-11-20T14:30:00Z"}'
    bad = f'{{"carats": {carats}, "price": "10.10"}}'
    body = '{"records": [' + ", ".join([good] * 500 + [bad] + [good] * 10) + "]}"
    response = client.post("/api/v1/sales/batch", content=body, headers={**key, **JSON})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "records", 500, "carats"]
    assert count_sales(client) == 0
