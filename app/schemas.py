"""Request and response bodies. Money leaves the service as a decimal string with two places."""

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictFloat,
    StringConstraints,
    WithJsonSchema,
)

MAX_CARATS = 10_000.0
MAX_PRICE = Decimal("99999999.99")
# Ids stay exact as JSON numbers in every client (JavaScript's safe integers).
MAX_ID = 2**53 - 1
CENT = Decimal("0.01")


def to_money(value: float | Decimal) -> Decimal:
    """Round a dollar amount to whole cents (banker's rounding, as in accounting)."""
    return Decimal(repr(value) if isinstance(value, float) else value).quantize(
        CENT, rounding=ROUND_HALF_EVEN
    )


# What the OpenAPI schema promises is exactly what is accepted: RFC 3339 date-times with an
# offset, prices as numbers or as plain decimal text. (pydantic alone would also take unix
# timestamps, naive times and padded strings.)
# Years 1900-2099: a sale outside them is a typo, and the schema can say so.
_RFC3339 = re.compile(
    r"^(19|20)\d{2}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_PRICE_TEXT = re.compile(r"^(?=.*[1-9])\d{1,8}(\.\d{1,2})?$")


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with an offset, in 1900-2099, e.g. 2026-11-20T14:30:00Z"
        )
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


def _json_integer(value: object) -> object:
    """A JSON integer: 12 or 12.0 (JSON Schema counts both), but not "12" or true."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


JsonInt = BeforeValidator(_json_integer)


def _price_input(value: object) -> object:
    if isinstance(value, str) and not _PRICE_TEXT.fullmatch(value):
        raise ValueError("must be a positive amount with at most two decimals, e.g. 250.10")
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("must be a number or a decimal string")
    return value


def _as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


Money = Annotated[Decimal, PlainSerializer(lambda d: f"{to_money(d):.2f}", return_type=str)]
Carats = Annotated[float, Field(gt=0, le=MAX_CARATS, allow_inf_nan=False)]
BodyCarats = Annotated[float, Field(gt=0, le=MAX_CARATS, allow_inf_nan=False, strict=True)]
Price = Annotated[
    Decimal,
    BeforeValidator(_price_input),
    Field(gt=0, le=MAX_PRICE, decimal_places=2, allow_inf_nan=False),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": float(MAX_PRICE),
                    "multipleOf": 0.01,
                },
                {"type": "string", "pattern": _PRICE_TEXT.pattern},
            ],
            "description": 'Dollars, at most two decimals: 250.1 or "250.10".',
        }
    ),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_as_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _RFC3339.pattern}),
]
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID), JsonInt]
Flag = Annotated[bool, Field(strict=True)]
PositiveRate = Annotated[StrictFloat, Field(gt=0, le=1e6, allow_inf_nan=False)]
# Printable, no control characters, no leading or trailing space.
Name = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=100,
        pattern=r"^[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
    ),
]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Stores


class StoreCreate(Input):
    name: Name


class StorePublic(BaseModel):
    id: int
    name: str
    created_at: datetime


class StoreCreated(StorePublic):
    api_key: str = Field(description="Shown only in this response; keep it safe.")


class StoreList(BaseModel):
    items: list[StorePublic]


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


class SaleBatch(Input):
    records: list[SaleCreate] = Field(min_length=1)


class SaleBatchResult(BaseModel):
    count: int
    items: list[SalePublic]


class ImportResult(BaseModel):
    count: int


class SalePage(BaseModel):
    items: list[SalePublic]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end."
    )


# Training and the model registry


class Method(StrEnum):
    batch = "batch"
    minibatch = "minibatch"
    sgd = "sgd"


class TrainRequest(Input):
    learning_rate: Literal["auto"] | PositiveRate = "auto"
    max_iterations: Annotated[int, Field(ge=1, le=1_000_000), JsonInt] | None = None
    tolerance: Annotated[float, Field(strict=True, ge=0, le=1e6, allow_inf_nan=False)] | None = None
    feature_scaling: Flag = True
    method: Method = Method.batch
    batch_size: Annotated[int, Field(ge=1, le=1_000_000), JsonInt] | None = None
    epochs: Annotated[int, Field(ge=1, le=10_000), JsonInt] | None = None
    random_seed: Annotated[int, Field(ge=0, le=2**32 - 1), JsonInt] | None = None
    store_ids: Annotated[list[BodyId], Field(min_length=1, max_length=1_000)] | None = None
    sold_since: Timestamp | None = None
    sold_until: Timestamp | None = None
    activate: Flag = True


def money_text(dollars: float) -> str:
    """A model's dollar amount as cents text; the fast path for many quotes."""
    return f"{dollars:.2f}"


class Interval(BaseModel):
    level: float
    lower: str = Field(description="Dollars, two decimals.")
    upper: str = Field(description="Dollars, two decimals.")


class LiveError(BaseModel):
    """How the version does on sales recorded after it was trained."""

    n_sales: int
    mae: float | None


class ModelVersionPublic(BaseModel):
    version: int
    status: str
    active: bool
    silver_price: Money
    gold_price_per_carat: Money
    n_samples: int
    iterations: int
    converged: bool
    metrics: dict[str, Any]
    parameters: dict[str, Any]
    filters: dict[str, Any]
    trained_at: datetime
    training_seconds: float
    live: LiveError


class ModelVersionList(BaseModel):
    items: list[ModelVersionPublic]


class CostHistory(BaseModel):
    iterations: list[int]
    cost: list[float]


class Prices(BaseModel):
    silver_price: Money
    gold_price_per_carat: Money
    silver_price_std_error: float | None
    gold_price_per_carat_std_error: float | None
    silver_price_interval: Interval | None
    gold_price_per_carat_interval: Interval | None
    model_version: int
    trained_at: datetime
    n_samples: int


# Predictions


class Prediction(BaseModel):
    carats: float
    price: str = Field(description="Dollars, two decimals.")
    interval: Interval | None = Field(description="95% prediction interval; null with < 3 sales.")


class SinglePrediction(Prediction):
    model_version: int


class PredictRequest(Input):
    carats: list[BodyCarats] = Field(min_length=1)


class Predictions(BaseModel):
    model_version: int
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    detail: Any = Field(description="What was wrong: a message, or a list of {loc, msg}.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing or unknown API key",
        403: "The key may not do this",
        404: "Not found",
        409: "Conflicts with the current state",
        413: "Request body too large",
        422: "A field breaks a rule; detail names it",
        503: "Database unavailable or busy; retry after Retry-After seconds",
    }.items()
}


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    detail: str | None = None
