import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.deps import MetricsDep, ModelCacheDep, SessionDep, SettingsDep
from app.errors import too_long
from app.fields import QueryCarats, RowId, Timestamp, money_text
from app.model_cache import ActiveModelCache, ServingModel
from app.routes import JsonRoute
from app.schemas.prices import (
    EstimateInterval,
    PeriodPrices,
    Predictions,
    PredictRequest,
    PriceHistory,
    Prices,
    SinglePrediction,
)
from app.services.aggregates import Period, SalesFilter, check_period
from app.services.price_history import price_history
from app.services.registry import NoActiveModel

router = APIRouter(prefix="/api/v1", tags=["prices"], route_class=JsonRoute)

# Quotes computed on the event loop before a request moves to a thread: a thread hop costs
# about what a few hundred quotes do.
QUOTES_ON_THE_LOOP = 500


async def _serving(cache: ActiveModelCache) -> ServingModel:
    model = await cache.get()
    if model is None:
        raise NoActiveModel()
    return model


def _quotes(model: ServingModel, carats: list[float]) -> list[dict[str, Any]]:
    """Quotes as plain dicts in the shape of `Prediction`: building a pydantic object per
    quote cost ~20 us each, most of a 100,000-quote request."""
    x = np.asarray(carats, dtype=float)
    prices = model.regressor.predict(x).tolist()
    # At the level of the fit's own intervals (the core's default, 95%).
    level = model.regressor.report_.level
    bounds = model.regressor.prediction_interval(x, level=level)
    if bounds is None:
        return [
            {"carats": c, "price": money_text(p), "interval": None}
            for c, p in zip(carats, prices, strict=True)
        ]
    lower, upper = bounds[0].tolist(), bounds[1].tolist()
    return [
        {
            "carats": c,
            "price": money_text(p),
            "interval": {"level": level, "lower": money_text(lo), "upper": money_text(hi)},
        }
        for c, p, lo, hi in zip(carats, prices, lower, upper, strict=True)
    ]


def _interval(bounds: tuple[float, float] | None, level: float) -> EstimateInterval | None:
    return (
        None if bounds is None else EstimateInterval(level=level, lower=bounds[0], upper=bounds[1])
    )


@router.get("/prices", response_model=Prices)
async def prices(cache: ModelCacheDep) -> Prices:
    """The learned silver price and gold price per carat, with standard errors and 95% intervals."""
    model = await _serving(cache)
    reg = model.regressor
    report = reg.report_

    return Prices(
        silver_price=reg.silver_price_,
        gold_price_per_carat=reg.gold_price_per_carat_,
        silver_price_std_error=report.silver_std_error,
        gold_price_per_carat_std_error=report.gold_std_error,
        silver_price_interval=_interval(report.silver_ci, report.level),
        gold_price_per_carat_interval=_interval(report.gold_ci, report.level),
        model_version=model.version,
        trained_at=model.trained_at,
        n_samples=model.n_samples,
    )


@router.get("/prices/history", response_model=PriceHistory)
def prices_history(
    session: SessionDep,
    period: Period = Period.month,
    store_id: Annotated[RowId | None, Query()] = None,
    sold_since: Annotated[Timestamp | None, Query()] = None,
    sold_until: Annotated[Timestamp | None, Query()] = None,
) -> PriceHistory:
    """The silver price and the gold price per carat fitted on each week's or month's sales."""
    check_period(("query",), sold_since, sold_until)
    where = SalesFilter(
        store_ids=(store_id,) if store_id is not None else None,
        sold_since=sold_since,
        sold_until=sold_until,
    )
    items = []
    for fit in price_history(session, where, period):
        report = fit.report
        items.append(
            PeriodPrices(
                period_start=fit.start,
                n_samples=fit.n_samples,
                silver_price=fit.silver_price,
                gold_price_per_carat=fit.gold_price_per_carat,
                silver_price_std_error=report.silver_std_error if report else None,
                gold_price_per_carat_std_error=report.gold_std_error if report else None,
                silver_price_interval=_interval(report.silver_ci, report.level) if report else None,
                gold_price_per_carat_interval=_interval(report.gold_ci, report.level)
                if report
                else None,
            )
        )
    return PriceHistory(period=period.value, items=items)


@router.get("/predict", response_model=SinglePrediction)
async def predict_one(
    carats: Annotated[QueryCarats, Query()],
    cache: ModelCacheDep,
    metrics: MetricsDep,
) -> SinglePrediction:
    """Quote a ring of the given carats, with its 95% prediction interval."""
    model = await _serving(cache)
    [quote] = _quotes(model, [carats])
    metrics.predictions.inc()
    return SinglePrediction.model_validate({**quote, "model_version": model.version})


@router.post("/predict", response_model=Predictions)
async def predict_many(
    body: PredictRequest,
    cache: ModelCacheDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Response:
    """Quote many rings at once, all from one model version."""
    if len(body.carats) > settings.MAX_PREDICT_CARATS:
        raise too_long(["body", "carats"], settings.MAX_PREDICT_CARATS, len(body.carats))
    model = await _serving(cache)

    def answer() -> bytes:
        # Serialised once, directly: the dicts already have the documented `Predictions` shape.
        payload = {"model_version": model.version, "predictions": _quotes(model, body.carats)}
        return json.dumps(payload, separators=(",", ":")).encode()

    # A big request is seconds of work: off the event loop, which every other request shares.
    many = len(body.carats) > QUOTES_ON_THE_LOOP
    content = await run_in_threadpool(answer) if many else answer()
    metrics.predictions.inc(len(body.carats))
    return Response(content, media_type="application/json")
