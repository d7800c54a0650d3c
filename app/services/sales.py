"""Recording, listing and deleting sales."""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.errors import Forbidden, InvalidInput, Loc, NotFound, error_item
from app.fields import to_cents
from app.orm import DeletedSale, Sale, Store, utcnow
from app.security import Caller
from app.services.aggregates import SalesFilter

# A sample draws at most this many random ids, however sparse a store's sales are.
MAX_SAMPLE_PROBES = 100_000


@dataclass(frozen=True)
class NewSale:
    carats: float
    price: Decimal
    store_id: int | None = None
    sold_at: datetime | None = None


# Where the store_id of the record at an index sits in the request, for error locations.
StoreIdLoc = Callable[[int], Loc]


def in_batch(index: int) -> Loc:
    return ["body", "records", index, "store_id"]


def in_body(_: int) -> Loc:
    return ["body", "store_id"]


def check_store_ids(
    session: Session, caller: Caller, wanted: Sequence[int | None], loc: StoreIdLoc
) -> list[int]:
    """The store of each record, checked against the caller; every problem is reported."""
    named = {store_id for store_id in wanted if store_id is not None}
    known = set(session.scalars(select(Store.id).where(Store.id.in_(named)))) if named else set()
    errors: list[dict[str, Any]] = []
    ids: list[int] = []
    for index, named_id in enumerate(wanted):
        caller.check_store(named_id)
        if named_id is None and caller.store_id is not None:
            ids.append(caller.store_id)
        elif named_id is None:
            errors.append(error_item(loc(index), "required when using the admin key", "missing"))
        elif named_id not in known:
            errors.append(error_item(loc(index), f"no store with id {named_id}"))
        else:
            ids.append(named_id)
    if errors:
        raise InvalidInput(errors)
    return ids


def record_sales(
    session: Session, caller: Caller, records: Sequence[NewSale], *, loc: StoreIdLoc = in_batch
) -> list[Sale]:
    """Insert all records or none, in one multi-row INSERT ... RETURNING."""
    store_ids = check_store_ids(session, caller, [r.store_id for r in records], loc)
    now = utcnow()
    rows = [
        {
            "store_id": store_id,
            "carats": record.carats,
            "price_cents": to_cents(record.price),
            "sold_at": record.sold_at or now,
            "created_at": now,
        }
        for store_id, record in zip(store_ids, records, strict=True)
    ]
    return list(session.scalars(insert(Sale).returning(Sale, sort_by_parameter_order=True), rows))


def _visible_sale(session: Session, caller: Caller, sale_id: int) -> Sale:
    sale = session.get(Sale, sale_id)
    if sale is None:
        raise NotFound(f"no sale with id {sale_id}")
    if not caller.is_admin and sale.store_id != caller.store_id:
        raise Forbidden(f"sale {sale_id} belongs to another store")
    return sale


def get_sale(session: Session, caller: Caller, sale_id: int) -> Sale:
    return _visible_sale(session, caller, sale_id)


def delete_sale(session: Session, caller: Caller, sale_id: int) -> None:
    """Delete a sale, leaving a record of it so that every process can take it out of the
    live accuracy it keeps."""
    sale = _visible_sale(session, caller, sale_id)
    session.add(DeletedSale(sale_id=sale.id, carats=sale.carats, price_cents=sale.price_cents))
    session.delete(sale)
    session.flush()


def list_sales(
    session: Session,
    caller: Caller,
    *,
    store_id: int | None,
    sold_since: datetime | None,
    sold_until: datetime | None,
    limit: int,
    after_id: int | None,
) -> tuple[list[Sale], int | None]:
    """One page in id order and the cursor for the next: a keyset, so concurrent inserts
    never shift or repeat rows across pages."""
    store_id = visible_store(caller, store_id)
    where = SalesFilter(
        store_ids=(store_id,) if store_id is not None else None,
        sold_since=sold_since,
        sold_until=sold_until,
    )
    query = select(Sale).where(*where.conditions()).order_by(Sale.id).limit(limit + 1)
    if after_id is not None:
        query = query.where(Sale.id > after_id)
    sales = list(session.scalars(query))
    if len(sales) > limit:
        return sales[:limit], sales[limit - 1].id
    return sales, None


def visible_store(caller: Caller, store_id: int | None) -> int | None:
    """The store a listing may cover: a store key its own, the admin any or all."""
    caller.check_store(store_id)
    return store_id if caller.is_admin else caller.store_id


def sample_sales(
    session: Session, caller: Caller, *, store_id: int | None, size: int, seed: int
) -> tuple[int, list[tuple[float, int]]]:
    """The number of matching sales and at most ``size`` of them, (carats, cents), drawn
    uniformly by probing random ids: a few index lookups, not a scan, at millions of sales."""
    store_id = visible_store(caller, store_id)
    where = SalesFilter(store_ids=(store_id,) if store_id is not None else None)
    n, low, high = session.execute(
        select(func.count(), func.min(Sale.id), func.max(Sale.id)).where(*where.conditions())
    ).one()
    if n <= size:
        rows = session.execute(
            select(Sale.carats, Sale.price_cents).where(*where.conditions()).order_by(Sale.id)
        ).all()
        return n, [(float(c), int(p)) for c, p in rows]
    # Enough probes that about `size` land on a matching sale, whatever the gaps and other
    # stores in the id range.
    rng = np.random.default_rng(seed)
    probes = min(int(size * (high - low + 1) / n * 1.2) + 1, MAX_SAMPLE_PROBES)
    ids = np.unique(rng.integers(low, high + 1, probes)).tolist()
    found: list[tuple[float, int]] = []
    for start in range(0, len(ids), 1000):
        found += [
            (float(c), int(p))
            for c, p in session.execute(
                select(Sale.carats, Sale.price_cents).where(
                    Sale.id.in_(ids[start : start + 1000]), *where.conditions()
                )
            )
        ]
    return n, found[:size]


def export_rows(session: Session, where: SalesFilter, chunk: int = 10_000) -> Iterator[list[Sale]]:
    """The matching sales in id order, a chunk at a time (keyset pagination); the caller has
    limited ``where`` to the stores its key may see (visible_store)."""
    after = 0
    while True:
        rows = list(
            session.scalars(
                select(Sale)
                .where(*where.conditions(), Sale.id > after)
                .order_by(Sale.id)
                .limit(chunk)
            )
        )
        if not rows:
            return
        after = rows[-1].id
        yield rows
