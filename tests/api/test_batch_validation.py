"""The batch's fast path: its answer is written without a model per sale, and its rows are
bound without SQLAlchemy's processing of each value, but both stay what the models write."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from app.orm import UTCDateTime
from app.schemas.sales import SaleBatchResult, SalePublic
from app.services.sales import StoredSale, sqlite_time


@given(
    st.lists(
        st.tuples(
            st.floats(0.001, 10_000),
            st.integers(1, 9_999_999_999),
            st.datetimes(datetime(1900, 1, 2), datetime(2099, 12, 30), timezones=st.just(UTC)),
        ),
        min_size=1,
        max_size=20,
    ),
    st.datetimes(timezones=st.just(UTC)),
)
def test_a_batch_answers_with_the_bytes_its_model_writes(
    sales: list[tuple[float, int, datetime]], now: datetime
) -> None:
    rows = [
        {"store_id": 3, "carats": c, "price_cents": p, "sold_at": t, "created_at": now}
        for c, p, t in sales
    ]
    ids = range(41, 41 + len(rows))
    items = [SalePublic.from_row(StoredSale(i, **row)) for i, row in zip(ids, rows, strict=True)]
    expected = SaleBatchResult(count=len(items), items=items).model_dump_json()
    assert SaleBatchResult.json_of(ids, rows) == expected


@given(
    st.datetimes(
        datetime(1900, 1, 2),
        datetime(2099, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30))]),
    )
)
def test_sqlite_gets_times_written_as_the_orm_writes_them(moment: datetime) -> None:
    dialect = sqlite.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    assert sqlite_time(moment) == bind(moment)
