"""Sales: one, a batch, a CSV import, a page, a sample."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, Protocol, cast

import orjson
from pydantic import (
    BaseModel,
    Field,
    GetCoreSchemaHandler,
    ValidatorFunctionWrapHandler,
)
from pydantic_core import core_schema

from app.fields import (
    CENT,
    EARLIEST_SALE,
    LATEST_SALE,
    MAX_CARATS,
    MAX_ID,
    MAX_PRICE,
    MIN_CARATS,
    PRICE_TEXT,
    RFC3339,
    Amount,
    BodyCarats,
    BodyId,
    Money,
    Price,
    Timestamp,
    from_cents,
    timestamp_from_text,
    to_cents,
)
from app.schemas.common import Input


class SaleFields(Protocol):
    """A sale as stored (an ORM Sale)."""

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

    @staticmethod
    def json_of(sale_id: int, row: Mapping[str, Any]) -> str:
        """The model_dump_json() of the sale with this id and row as inserted, byte for
        byte, written by orjson (the answer of every single sale)."""
        return orjson.dumps(_public(sale_id, row), option=orjson.OPT_UTC_Z).decode()


def _public(sale_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """A SalePublic's JSON fields, as orjson writes them, for a sale as inserted."""
    cents = row["price_cents"]
    return {
        "id": sale_id,
        "store_id": row["store_id"],
        "carats": row["carats"],
        "price": f"{cents // 100}.{cents % 100:02d}",  # Money's text for a positive price
        "sold_at": row["sold_at"],
        "created_at": row["created_at"],
    }


class SaleBatch(Input):
    records: list[SaleCreate] = Field(min_length=1)


class SaleRecord(NamedTuple):
    """A sale to record as validated: what its SaleCreate holds, as a tuple."""

    carats: float
    price_cents: int
    store_id: int | None
    sold_at: datetime | None

    @classmethod
    def of(cls, sale: SaleCreate) -> "SaleRecord":
        return cls(sale.carats, to_cents(sale.price), sale.store_id, sale.sold_at)

    def model(self) -> SaleCreate:
        """The SaleCreate this record came from, as validated: what identifies the request
        under an Idempotency-Key. Built without validating again (a record holds only
        validated values), which took most of the time a keyed sale spent in its group."""
        return SaleCreate.model_construct(
            store_id=self.store_id,
            carats=self.carats,
            price=from_cents(self.price_cents),
            sold_at=self.sold_at,
        )


_RECORD_FIELDS = frozenset(SaleCreate.model_fields)


def fast_record(record: Any) -> SaleRecord | None:
    """The record as SaleCreate validates it, when it is written the usual way (JSON numbers
    or price text, an RFC 3339 sold_at in UTC or with an offset); None for anything else,
    which SaleCreate then judges. Every value accepted here is one SaleCreate accepts and
    reads the same (tests/api/test_batch_validation.py)."""
    if type(record) is not dict or not record.keys() <= _RECORD_FIELDS:
        return None
    carats: Any = record.get("carats")
    price: Any = record.get("price")
    store_id: Any = record.get("store_id")
    sold_at: Any = record.get("sold_at")
    if type(carats) is int and MIN_CARATS <= carats <= MAX_CARATS:
        carats = float(carats)  # after the range: an integer of 400 digits overflows a float
    elif type(carats) is Decimal:
        carats = float(carats)  # as pydantic reads it, and far faster to compare as a float
    if type(carats) is not float or not MIN_CARATS <= carats <= MAX_CARATS:
        return None
    if type(price) is str and PRICE_TEXT.fullmatch(price):
        # The pattern admits only amounts in range with two decimals, zeros after them aside:
        # below 2**53 hundredths, the float's error times 100 stays far below half a cent.
        cents = round(float(price) * 100)
    elif type(price) is int and 0 < price <= MAX_PRICE:
        cents = price * 100
    elif type(price) is Decimal and price.is_finite() and 0 < price <= MAX_PRICE:
        # In range first, so that quantize cannot overflow; then no more than two decimals
        # as written (a JSON number comes as the Decimal of its literal).
        if (exact := price.quantize(CENT)) != price:
            return None
        cents = to_cents(exact)
    else:
        return None
    if store_id is not None and (type(store_id) is not int or not 1 <= store_id <= MAX_ID):
        return None
    if sold_at is not None:
        if type(sold_at) is not str:
            return None
        try:
            if sold_at[-1:] in ("Z", "z") and RFC3339.fullmatch(sold_at):
                # In UTC, the usual way: what timestamp_from_text does, without what an offset
                # or a refusal needs (fromisoformat checks every part the pattern places).
                sold_at = datetime.fromisoformat(sold_at.upper())
                if not EARLIEST_SALE <= sold_at < LATEST_SALE:
                    return None
            else:
                sold_at = timestamp_from_text(sold_at)
        except ValueError:
            return None
    # tuple.__new__: a NamedTuple's own __new__ is Python, and took a fifth of this function.
    return tuple.__new__(SaleRecord, (carats, cents, store_id, sold_at))


@dataclass(frozen=True)
class ValidBatch:
    """A SaleBatch as validated, its records as tuples. A batch of records written the usual
    way is read without a model per record, about three times faster; any other is read by
    SaleBatch, so that every error and every value is SaleBatch's. Its schema is SaleBatch's."""

    records: list[SaleRecord]
    # The model whose JSON this type reads (app/routes/__init__.py asks).
    validated_as: ClassVar[type[BaseModel]] = SaleBatch

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(cls._validate, handler(SaleBatch))

    @classmethod
    def _validate(cls, value: Any, full: ValidatorFunctionWrapHandler) -> "ValidBatch":
        if type(value) is dict and value.keys() == {"records"}:
            given = value["records"]
            if type(given) is list and given:
                records = [fast_record(record) for record in given]
                if None not in records:
                    return cls(cast(list[SaleRecord], records))
        batch: SaleBatch = full(value)
        return cls([SaleRecord.of(r) for r in batch.records])

    def model(self) -> SaleBatch:
        """The SaleBatch these records came from, as validated: what identifies the request
        under an Idempotency-Key."""
        return SaleBatch(records=[r.model() for r in self.records])


class SaleBatchResult(BaseModel):
    count: int
    items: list[SalePublic]

    @staticmethod
    def json_of(ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> str:
        """The model_dump_json() of the result for these sales (their ids, and their rows as
        inserted), byte for byte, written by orjson: building 10,000 SalePublic objects and
        dumping them took longer than validating and inserting the batch."""
        items = [_public(sale_id, row) for sale_id, row in zip(ids, rows, strict=True)]
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
