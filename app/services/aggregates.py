"""Aggregates over sales computed in the database: the rows never come into Python whole."""

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Double,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.selectable import ScalarSelect

from app.db import backend
from app.errors import InvalidInput
from app.orm import Sale
from models import SufficientStats

STREAM_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class SalesFilter:
    """Which sales a listing, an export or a training takes."""

    store_ids: tuple[int, ...] | None = None
    sold_since: datetime | None = None
    sold_until: datetime | None = None
    # Only the ids up to this one: those a training's snapshot on PostgreSQL holds every sale
    # of (app/training.py). Not a filter the caller chose, so not in describe().
    through_id: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.through_id is not None:
            conds.append(Sale.id <= self.through_id)
        if self.store_ids is not None:
            conds.append(Sale.store_id.in_(self.store_ids))
        if self.sold_since is not None:
            conds.append(Sale.sold_at >= self.sold_since)
        if self.sold_until is not None:
            conds.append(Sale.sold_at < self.sold_until)
        return conds

    def describe(self) -> dict[str, Any]:
        return {
            "store_ids": list(self.store_ids) if self.store_ids is not None else None,
            "sold_since": self.sold_since.isoformat() if self.sold_since else None,
            "sold_until": self.sold_until.isoformat() if self.sold_until else None,
        }


def check_period(prefix: tuple[str, ...], since: datetime | None, until: datetime | None) -> None:
    """sold_until must come after sold_since; the 422 names sold_until."""
    if since is not None and until is not None and since >= until:
        raise InvalidInput.at([*prefix, "sold_until"], "must be later than sold_since")


def _dollars(cents: ColumnElement[int] | InstrumentedAttribute[int]) -> ColumnElement[float]:
    return cast(cents, Double[float](asdecimal=False)) / 100.0


def _centred(shift_x: float, shift_cents: int) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """A sale's carats and price in cents less a reference sale's."""
    # A float reference makes dc a float on both backends: an integer sum of squared cents
    # could overflow, and PostgreSQL would sum a bigint as a slow exact numeric.
    return (
        Sale.carats - shift_x,
        Sale.price_cents - bindparam(None, float(shift_cents), Double[float](asdecimal=False)),
    )


def _sums(dx: ColumnElement[Any], dc: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """count, and the sums of dx, dc, dx^2, dx dc, dc^2 around a reference sale, with dc in
    cents: _stats turns them into dollars with three divisions of the sums instead of one per
    sale and sum, which keeps the pass as cheap as the plain five sums."""
    return [
        func.count(),
        func.sum(dx),
        func.sum(dc),
        func.sum(dx * dx),
        func.sum(dx * dc),
        func.sum(dc * dc),
    ]


def _shifted_sums(shift_x: float, shift_cents: int) -> list[ColumnElement[Any]]:
    return _sums(*_centred(shift_x, shift_cents))


def _stats(row: Sequence[Any], shift_x: float, shift_cents: int) -> SufficientStats:
    n, sx, sc, sxx, sxc, scc = row
    return SufficientStats.from_sums(
        n=int(n),
        shift_x=float(shift_x),
        shift_y=shift_cents / 100.0,
        sum_x=float(sx or 0.0),
        sum_y=float(sc or 0.0) / 100.0,
        sum_xx=float(sxx or 0.0),
        sum_xy=float(sxc or 0.0) / 100.0,
        sum_yy=float(scc or 0.0) / 10_000.0,
    )


def newest_sale_id(session: Session) -> int:
    """The highest sale id (0 when there are none)."""
    return session.scalar(_NEWEST_ID) or 0


_NEWEST_ID = select(func.coalesce(func.max(Sale.id), 0))


def _newest_id(where: SalesFilter) -> ScalarSelect[Any]:
    """The highest sale id up to where.through_id, of every sale: a watermark counts them
    all, whichever the filter matches."""
    if where.through_id is None:
        return _NEWEST_ID.scalar_subquery()
    return _NEWEST_ID.where(Sale.id <= where.through_id).scalar_subquery()


# Sales a reference point is taken from: their median is a typical sale, whatever outliers
# the first ones hold, at the cost of reading a thousand index entries.
REFERENCE_SAMPLE = 1024
Reference = tuple[float, int]  # carats, price in cents


def _typical(conditions: Sequence[ColumnElement[bool]]) -> list[ScalarSelect[Any]]:
    """The lower medians of the carats and of the prices of the first REFERENCE_SAMPLE
    matching sales (NULL when there are none), worked out by the database: its answer is two
    numbers, not a thousand rows."""
    sample = (
        select(Sale.carats, Sale.price_cents)
        .where(*conditions)
        .order_by(Sale.id)
        .limit(REFERENCE_SAMPLE)
        .cte("reference_sample")
    )
    # The lower middle of n values is the ((n - 1) // 2)-th, as statistics.median_low takes.
    middle = select((func.count() - 1) // 2).select_from(sample).scalar_subquery()
    return [
        select(column).order_by(column).limit(1).offset(middle).scalar_subquery()
        for column in (sample.c.carats, sample.c.price_cents)
    ]


def _reference(carats: float | None, cents: int | None) -> Reference | None:
    return None if carats is None or cents is None else (float(carats), int(cents))


def typical_sale(session: Session, conditions: Sequence[ColumnElement[bool]]) -> Reference | None:
    """A reference point for sums over the matching sales: the median carats and price of the
    first REFERENCE_SAMPLE of them, or None when there are none.

    Sums around a typical sale keep the spread's digits: around an outlier (a price of
    $99,999,999.99 typed for $999.99) every term would be huge, and taking that sale out again
    would leave only the rounding of the rest."""
    carats, cents = session.execute(select(*_typical(conditions))).one()
    return _reference(carats, cents)


def _newest_and_typical(session: Session, where: SalesFilter) -> tuple[int, Reference | None]:
    """newest_sale_id and the typical matching sale, in one statement."""
    newest, carats, cents = session.execute(
        select(_newest_id(where), *_typical(where.conditions()))
    ).one()
    return int(newest), _reference(carats, cents)


def sales_statistics(
    sessions: Sequence[Session], where: SalesFilter
) -> tuple[int, SufficientStats]:
    """The newest sale id, and the statistics of the matching sales, read in the one snapshot
    the sessions share: on SQLite a second session sums half of the sales beside the first."""
    if backend(sessions[0]) == "postgresql":
        return _regression_sums(sessions[0], where)
    newest, reference = _newest_and_typical(sessions[0], where)
    return newest, _shifted_statistics(sessions, where, reference)


def _regression_sums(session: Session, where: SalesFilter) -> tuple[int, SufficientStats]:
    """PostgreSQL's regr_* aggregates keep the count, the means and the sums of squares and
    products around the running mean (Youngs and Cramer's update, accurate whatever the
    carats' offset) in one state that the six share: one step a sale where six sums take
    six, and no typical sale to read first. The newest id (up to where.through_id) comes in
    the same statement."""
    y, x = cast(Sale.price_cents, Double[float](asdecimal=False)), Sale.carats
    newest, n, mean_x, mean_cents, sxx, sxc, scc = session.execute(
        select(
            _newest_id(where),
            *(f(y, x) for f in (func.regr_count, func.regr_avgx, func.regr_avgy)),
            *(f(y, x) for f in (func.regr_sxx, func.regr_sxy, func.regr_syy)),
        ).where(*where.conditions())
    ).one()
    stats = SufficientStats.from_sums(
        n=int(n),
        shift_x=mean_x,
        shift_y=mean_cents / 100.0 if mean_cents is not None else None,
        sum_x=0.0,
        sum_y=0.0,
        sum_xx=sxx,
        sum_xy=sxc / 100.0 if sxc is not None else None,
        sum_yy=scc / 10_000.0 if scc is not None else None,
    )
    return int(newest), stats


# Below this many ids a second scanning thread costs more than it saves.
PARALLEL_SCAN_IDS = 100_000


def _shifted_statistics(
    sessions: Sequence[Session], where: SalesFilter, shift: Reference | None
) -> SufficientStats:
    """The six sums over the matching sales, around a typical sale so that carats clustered
    far from zero keep their precision.

    With a second session, which must see the same snapshot as the first, and enough sales,
    each sums half the ids in a thread of its own: SQLite's scan is one core's work, and the
    sqlite3 module lets go of the GIL while it steps. The halves add up to the sums of every
    matching sale, as one pass would."""
    centre = shift or (0.0, 0)
    conditions = where.conditions()

    def query(*more: ColumnElement[bool]) -> Select[Any]:
        return _sums_query(centre, [*conditions, *more])

    first, *others = sessions
    if others:
        # Apart, each is one look at an end of the index; together, SQLite scans the table.
        low, high = first.execute(
            select(*(select(f(Sale.id)).scalar_subquery() for f in (func.min, func.max)))
        ).one()
        if low is not None and high - low >= PARALLEL_SCAN_IDS:
            cut = low + (high - low) // 2
            with ThreadPoolExecutor(1, thread_name_prefix="training-scan") as pool:
                lower = pool.submit(lambda: others[0].execute(query(Sale.id <= cut)).one())
                upper = first.execute(query(Sale.id > cut)).one()
                # Sums around the same point add up term by term: the one pass's own sums,
                # added in another order.
                row = [(a or 0) + (b or 0) for a, b in zip(lower.result(), upper, strict=True)]
                return _stats(row, *centre)
    return _stats(first.execute(query()).one(), *centre)


def _sums_query(centre: Reference, conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    dx, dc = _centred(*centre)
    # SQLite computes an expression at each mention, dx and dc three times a sale each. Out of
    # a subquery it cannot merge into the sums (it has a LIMIT, of none), each is computed
    # once and read back after: a sixth less work a sale.
    centred = select(dx.label("dx"), dc.label("dc")).where(*conditions).limit(-1).subquery()
    return select(*_sums(centred.c.dx, centred.c.dc))


class Period(StrEnum):
    week = "week"
    month = "month"


def _period_start(period: Period, dialect: str) -> ColumnElement[Any]:
    """The first day of the week (Monday) or month a sale falls in, in UTC."""
    if dialect == "postgresql":
        return func.date(func.date_trunc(period.value, func.timezone("UTC", Sale.sold_at)))
    # SQLite keeps UTC text; six days back, then forward to a Monday, is the week's Monday.
    if period is Period.week:
        return func.date(Sale.sold_at, "-6 days", "weekday 1")
    return func.date(Sale.sold_at, "start of month")


def sums_by_period(
    session: Session, where: SalesFilter, period: Period
) -> list[tuple[date, SufficientStats]]:
    """The statistics of the matching sales per week or month, oldest first, in one grouped
    query, around one typical sale as for training."""
    conds = where.conditions()
    shift = typical_sale(session, conds)
    if shift is None:
        return []
    start = _period_start(period, backend(session)).label("period_start")
    rows = session.execute(
        select(start, *_shifted_sums(*shift))
        .where(*conds)
        .group_by(literal_column("period_start"))
        .order_by(literal_column("period_start"))
    )
    return [
        (
            row[0] if isinstance(row[0], date) else date.fromisoformat(row[0]),
            _stats(row[1:], *shift),
        )
        for row in rows
    ]


def sums_by_segment(
    session: Session,
    starts: Sequence[int],
    after: int,
    through: int,
    shift: Reference,
) -> dict[int, SufficientStats]:
    """Statistics of the sales with ids in (after, through], grouped by the segment of ids
    they fall in: segment ``s`` holds the ids above ``s`` and up to the next start."""
    if through <= after or not starts:
        return {}
    ordered = sorted(starts, reverse=True)
    ids = (Sale.id > max(after, ordered[-1]), Sale.id <= through)
    if len(ordered) == 1:
        row = session.execute(select(*_shifted_sums(*shift)).where(*ids)).one()
        return {ordered[0]: _stats(row, *shift)}
    segment = case(*[(Sale.id > start, start) for start in ordered[:-1]], else_=ordered[-1]).label(
        "segment"
    )
    # Grouped by the output name: the CASE written twice would bind its numbers twice, and
    # PostgreSQL would not see the two as the same expression.
    query = select(segment, *_shifted_sums(*shift)).where(*ids).group_by(literal_column("segment"))
    return {int(row[0]): _stats(row[1:], *shift) for row in session.execute(query)}


# The sales the mean absolute error is measured on: it needs the fitted line, so it cannot
# come from the one pass that sums; measured on the newest of the sales instead of all of
# them, it costs a few milliseconds at any number of sales.
MAE_SAMPLE = 10_000


def mean_absolute_error(
    session: Session, where: SalesFilter, silver: float, gold: float
) -> float | None:
    """MAE of a price line over the newest MAE_SAMPLE matching sales (all of them when there
    are no more), computed in the database; None when there are none."""
    newest = (
        select(Sale.carats, Sale.price_cents)
        .where(*where.conditions())
        .order_by(Sale.id.desc())
        .limit(MAE_SAMPLE)
        .subquery()
    )
    error = func.abs(_dollars(newest.c.price_cents) - (silver + gold * newest.c.carats))
    mae = session.scalar(select(func.avg(error)))
    return float(mae) if mae is not None else None


def sale_chunks(session: Session, where: SalesFilter) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The matching sales in id order, a bounded chunk at a time (keyset pagination), read
    in the caller's session so that a snapshot session gives every pass the same rows."""
    after = 0
    while True:
        rows = session.execute(
            select(Sale.id, Sale.carats, Sale.price_cents)
            .where(*where.conditions(), Sale.id > after)
            .order_by(Sale.id)
            .limit(STREAM_CHUNK_ROWS)
        ).all()
        if not rows:
            return
        block = np.asarray(rows, dtype=float)
        after = int(block[-1, 0])
        yield block[:, 1], block[:, 2] / 100.0
