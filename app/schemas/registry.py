"""Training requests and the model registry: versions, their live accuracy, their descent."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
)

from app.fields import BodyId, Estimate, Flag, JsonInt, PositiveRate, Timestamp
from app.orm import ModelVersion, VersionStatus
from app.schemas.common import Input
from app.services.aggregates import MAE_SAMPLE
from models.params import Method

# Training and the model registry


class TrainRequest(Input):
    learning_rate: Literal["auto"] | PositiveRate = "auto"
    max_iterations: Annotated[int, Field(ge=1, le=1_000_000), JsonInt] | None = None
    tolerance: Annotated[float, Field(strict=True, ge=0, le=1e6, allow_inf_nan=False)] | None = None
    feature_scaling: Flag = True
    method: Method = "batch"
    batch_size: Annotated[int, Field(ge=1, le=1_000_000), JsonInt] | None = None
    epochs: Annotated[int, Field(ge=1, le=10_000), JsonInt] | None = None
    random_seed: Annotated[int, Field(ge=0, le=2**32 - 1), JsonInt] | None = None
    store_ids: Annotated[list[BodyId], Field(min_length=1, max_length=1_000)] | None = None
    sold_since: Timestamp | None = None
    sold_until: Timestamp | None = None
    activate: Flag = True


class LiveAccuracy(BaseModel):
    """How the version quotes the sales recorded after it was trained."""

    n_sales: int = Field(description="Sales recorded since the version was trained.")
    rmse: Estimate | None = Field(description="Root mean squared error of its quotes on them.")
    bias: Estimate | None = Field(
        description="Mean of (price - quote): positive when those sales sold above the quotes."
    )


class ModelVersionPublic(BaseModel):
    version: int
    status: VersionStatus
    active: bool
    silver_price: Estimate
    gold_price_per_carat: Estimate
    n_samples: int
    iterations: int
    converged: bool
    metrics: dict[str, Any] = Field(
        description="Fit metrics (cost, mse, rmse, mae, r2, standard errors, intervals): "
        "estimates, JSON numbers at full precision. Each is over every sale the version was "
        f"fitted to except mae, the mean absolute error, which is over the newest {MAE_SAMPLE:,} "
        "of them by id (all of them when there are no more): it needs the fitted line, and "
        "reading every sale a second time for it would double the time a training takes."
    )
    parameters: dict[str, Any]
    filters: dict[str, Any]
    trained_at: datetime
    training_seconds: float
    live: LiveAccuracy

    @classmethod
    def from_row(
        cls, row: ModelVersion, *, active: int | None, live: LiveAccuracy
    ) -> "ModelVersionPublic":
        """The version as the API shows it, given the active version and its live accuracy."""
        return cls(
            version=row.version,
            status=row.status,
            active=row.version == active,
            silver_price=row.silver_price,
            gold_price_per_carat=row.gold_price_per_carat,
            n_samples=row.n_samples,
            iterations=row.iterations,
            converged=row.converged,
            metrics=row.metrics,
            parameters=row.parameters,
            filters=row.filters,
            trained_at=row.created_at,
            training_seconds=row.training_seconds,
            live=live,
        )


class ModelVersionPage(BaseModel):
    items: list[ModelVersionPublic]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page (older versions); null at the end."
    )


class CostSurface(BaseModel):
    """The cost as a function of the two prices, a quadratic:
    ``J(s, g) = min_cost + d . (hessian d) / 2`` with ``d = (s, g) - optimum``, so its
    contours are ellipses around the optimum."""

    optimum: tuple[float, float] = Field(description="(silver_price, gold_price_per_carat).")
    min_cost: float
    hessian: tuple[tuple[float, float], tuple[float, float]]


class DescentHistory(BaseModel):
    iterations: list[int]
    cost: list[float] = Field(description="The cost J after each of those iterations.")
    path: list[tuple[float, float]] = Field(
        description="(silver_price, gold_price_per_carat) after each of those iterations."
    )
    surface: CostSurface | None = Field(
        description="The cost surface the descent went down; null for old versions."
    )
