"""What the active model learned, over time, and the quotes it gives."""

from datetime import date, datetime
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
)

from app.fields import Amount, BodyCarats, Estimate
from app.schemas.common import Input


class EstimateInterval(BaseModel):
    """A confidence interval of a learned price: estimates, at full precision."""

    level: float
    lower: Estimate
    upper: Estimate


class QuoteInterval(BaseModel):
    """A prediction interval of a quote: amounts, in dollars with two decimals."""

    level: float
    lower: Amount
    upper: Amount


class Prices(BaseModel):
    silver_price: Estimate
    gold_price_per_carat: Estimate
    silver_price_std_error: Estimate | None
    gold_price_per_carat_std_error: Estimate | None
    silver_price_interval: EstimateInterval | None
    gold_price_per_carat_interval: EstimateInterval | None
    model_version: int
    trained_at: datetime
    n_samples: int


class PeriodPrices(BaseModel):
    period_start: date = Field(description="The Monday of the week, or the 1st of the month (UTC).")
    n_samples: int
    silver_price: Estimate | None = Field(
        description="Null when the period's sales cannot be fitted."
    )
    gold_price_per_carat: Estimate | None
    silver_price_std_error: Estimate | None
    gold_price_per_carat_std_error: Estimate | None
    silver_price_interval: EstimateInterval | None
    gold_price_per_carat_interval: EstimateInterval | None


class PriceHistory(BaseModel):
    period: Literal["week", "month"]
    items: list[PeriodPrices] = Field(
        description="Oldest first; periods without sales are left out."
    )


# Predictions


class Prediction(BaseModel):
    carats: float
    price: Amount
    interval: QuoteInterval | None = Field(
        description="95% prediction interval; null with fewer than 3 sales."
    )


class SinglePrediction(Prediction):
    model_version: int


class PredictRequest(Input):
    carats: list[BodyCarats] = Field(min_length=1)


class Predictions(BaseModel):
    model_version: int
    predictions: list[Prediction]
