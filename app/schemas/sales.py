"""Sales: one, a batch, a CSV import, a page, a sample."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson
from pydantic import (
    BaseModel,
    Field,
)

from app.fields import (
    Amount,
    BodyCarats,
    BodyId,
    Money,
    Price,
    Timestamp,
    from_cents,
)
from app.schemas.common import Input


class SaleFields(Protocol):
    """A sale as stored: an ORM Sale, or the StoredSale an insert returns."""

    @property
    def id(self) -> int: ...
    @property
    def store_id(self) -> int: ...
    @property
    def carats(self) -> float: ...
    @property
    def price_cents(self) -> int: ...
    @property
    def sold_at(self) -> datetime: ...
    @property
    def created_at(self) -> datetime: ...


# Sales


class SaleCreate(Input):
    store_id: BodyId | None = Field(None, description="Optional with a store key: its own store.")
    carats: BodyCarats
    price: Price
    sold_at: Timestamp | None = Field(None, description="Defaults to now.")


class SalePublic(BaseModel):
    id: int
    store_id: int
    carats: float
    price: Money
    sold_at: datetime
    created_at: datetime

    @classmethod
    def from_row(cls, sale: SaleFields) -> "SalePublic":
        return cls(
            id=sale.id,
            store_id=sale.store_id,
            carats=sale.carats,
            price=from_cents(sale.price_cents),
            sold_at=sale.sold_at,
            created_at=sale.created_at,
        )


class SaleBatch(Input):
    records: list[SaleCreate] = Field(min_length=1)


class SaleBatchResult(BaseModel):
    count: int
    items: list[SalePublic]

    @staticmethod
    def json_of(ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> str:
        """The model_dump_json() of the result for these sales (their ids, and their rows as
        inserted), byte for byte, written by orjson: building 10,000 SalePublic objects and
        dumping them took longer than validating and inserting the batch."""
        items = [
            {
                "id": sale_id,
                "store_id": row["store_id"],
                "carats": row["carats"],
                # Money's text for a price, which is positive.
                "price": f"{row['price_cents'] // 100}.{row['price_cents'] % 100:02d}",
                "sold_at": row["sold_at"],
                "created_at": row["created_at"],
            }
            for sale_id, row in zip(ids, rows, strict=True)
        ]
        return orjson.dumps({"count": len(items), "items": items}, option=orjson.OPT_UTC_Z).decode()


class SalePoint(BaseModel):
    carats: float
    price: Amount


class SaleSample(BaseModel):
    n_sales: int = Field(description="How many sales match; items are a uniform sample of them.")
    items: list[SalePoint]


class ImportResult(BaseModel):
    count: int


class SalePage(BaseModel):
    items: list[SalePublic]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )
