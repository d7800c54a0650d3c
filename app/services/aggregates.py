"""Aggregates over sales computed in the database: the rows never come into Python whole."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Double, cast, func, select
from sqlalchemy.orm import Session

from app.db import Database
from app.orm import ModelVersion, Sale
from models import SufficientStats

STREAM_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class SalesFilter:
    store_ids: tuple[int, ...] | None = None
    sold_since: datetime | None = None
    sold_until: datetime | None = None
    through_id: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if self.store_ids is not None:
            conds.append(Sale.store_id.in_(self.store_ids))
        if self.sold_since is not None:
            conds.append(Sale.sold_at >= self.sold_since)
        if self.sold_until is not None:
            conds.append(Sale.sold_at < self.sold_until)
        if self.through_id is not None:
            conds.append(Sale.id <= self.through_id)
        return conds

    def through(self, sale_id: int | None) -> "SalesFilter":
        return replace(self, through_id=sale_id)

    def describe(self) -> dict[str, Any]:
        return {
            "store_ids": list(self.store_ids) if self.store_ids is not None else None,
            "sold_since": self.sold_since.isoformat() if self.sold_since else None,
            "sold_until": self.sold_until.isoformat() if self.sold_until else None,
        }


def _dollars(column: ColumnElement[int]) -> ColumnElement[float]:
    return cast(column, Double) / 100.0


def sufficient_statistics(
    session: Session, where: SalesFilter
) -> tuple[SufficientStats, int | None]:
    """The six sums over the matching sales, shifted by the first matching sale so that
    clustered carats keep their precision, and the highest sale id they include."""
    conds = where.conditions()
    first = select(Sale).where(*conds).order_by(Sale.id).limit(1).subquery()
    x0 = select(first.c.carats).scalar_subquery()
    y0 = select(first.c.price_cents).scalar_subquery()
    dx = Sale.carats - x0
    dy = _dollars(Sale.price_cents - y0)
    row = session.execute(
        select(
            func.count(),
            func.sum(dx),
            func.sum(dy),
            func.sum(dx * dx),
            func.sum(dx * dy),
            func.sum(dy * dy),
            func.max(Sale.id),
            func.min(x0),
            func.min(y0),
        ).where(*conds)
    ).one()
    n, sx, sy, sxx, sxy, syy, max_id, shift_x, shift_y_cents = row
    stats = SufficientStats.from_sums(
        n=int(n),
        shift_x=float(shift_x or 0.0),
        shift_y=(shift_y_cents or 0) / 100.0,
        sum_x=float(sx or 0.0),
        sum_y=float(sy or 0.0),
        sum_xx=float(sxx or 0.0),
        sum_xy=float(sxy or 0.0),
        sum_yy=float(syy or 0.0),
    )
    return stats, max_id


def _absolute_error(silver: Any, gold: Any) -> ColumnElement[float]:
    """|price - (silver + gold * carats)| of a sale; the prices may be numbers or columns."""
    return func.abs(_dollars(Sale.price_cents) - (silver + gold * Sale.carats))


def mean_absolute_error(
    session: Session, where: SalesFilter, silver: float, gold: float
) -> tuple[int, float | None]:
    """Count and MAE of a price line over the matching sales, computed in the database."""
    n, mae = session.execute(
        select(func.count(), func.avg(_absolute_error(silver, gold))).where(*where.conditions())
    ).one()
    return int(n), (float(mae) if mae is not None else None)


def live_errors(
    session: Session, versions: Sequence[ModelVersion]
) -> dict[int, tuple[int, float | None]]:
    """For each version, count and MAE of its quotes on the sales recorded after it was
    trained, all in one grouped query."""
    if not versions:
        return {}
    mv = ModelVersion
    later = Sale.id > func.coalesce(mv.trained_through_sale_id, 0)
    rows = session.execute(
        select(
            mv.version,
            func.count(Sale.id),
            func.avg(_absolute_error(mv.silver_price, mv.gold_price_per_carat)),
        )
        .select_from(mv)
        .outerjoin(Sale, later)
        .where(mv.version.in_([v.version for v in versions]))
        .group_by(mv.version)
    )
    return {version: (int(n), float(mae) if mae is not None else None) for version, n, mae in rows}


def sale_chunks(db: Database, where: SalesFilter) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The matching sales in id order, a bounded chunk at a time (keyset pagination)."""
    after = 0
    while True:
        with db.session() as session:
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
