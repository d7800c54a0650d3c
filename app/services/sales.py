"""Recording, listing and deleting sales."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.errors import Forbidden, InvalidInput, Loc, NotFound, error_item
from app.orm import DeletedSale, Sale, Store, utcnow
from app.security import Caller
from app.services.aggregates import SalesFilter


@dataclass(frozen=True)
class NewSale:
    carats: float
    price: Decimal
    store_id: int | None = None
    sold_at: datetime | None = None


def to_cents(price: Decimal) -> int:
    return int(price.scaleb(2))


def from_cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


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
    for index, store_id in enumerate(wanted):
        if store_id is None:
            if caller.is_admin:
                errors.append(
                    error_item(loc(index), "required when using the admin key", "missing")
                )
                continue
            store_id = caller.store_id
        elif not caller.is_admin and store_id != caller.store_id:
            raise Forbidden(f"this key belongs to store {caller.store_id}, not store {store_id}")
        elif store_id not in known:
            errors.append(error_item(loc(index), f"no store with id {store_id}"))
            continue
        assert store_id is not None
        ids.append(store_id)
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
    if not caller.is_admin:
        if store_id is not None and store_id != caller.store_id:
            raise Forbidden(f"this key belongs to store {caller.store_id}, not store {store_id}")
        store_id = caller.store_id
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
