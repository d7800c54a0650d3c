from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.deps import MetricsDep, ModelCacheDep, QuoteSlotsDep, SessionDep, SettingsDep
from app.errors import InvalidInput, Loc, too_long
from app.fields import QueryCarats, RowId, Timestamp
from app.model_cache import ActiveModelCache, ServingModel
from app.quotes import many_quotes_json, one_quote_json
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
from models.errors import NonFiniteDataError

router = APIRouter(prefix="/api/v1", tags=["prices"], route_class=JsonRoute)

# Quotes computed on the event loop before a request moves to a thread: a thread hop costs
# about what a few thousand quotes do.
QUOTES_ON_THE_LOOP = 2_000


async def _serving(cache: ActiveModelCache) -> ServingModel:
    model = await cache.get()
    if model is None:
        raise NoActiveModel()
    return model


@contextmanager
def _priceable(loc: Loc) -> Iterator[None]:
    """Carats whose quote would be past what an amount may be are the client's to change (a
    version stored before training refused such fits may still give them): a 422."""
    try:
        yield
    except NonFiniteDataError as exc:
        raise InvalidInput.at(loc, str(exc)) from None


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
) -> Response:
    """Quote a ring of the given carats, with its 95% prediction interval."""
    model = await _serving(cache)
    with _priceable(["query", "carats"]):
        content = one_quote_json(model.line, model.version, carats)
    metrics.predictions.inc()
    return Response(content, media_type="application/json")


@router.post("/predict", response_model=Predictions)
async def predict_many(
    body: PredictRequest,
    cache: ModelCacheDep,
    quote_slots: QuoteSlotsDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Response:
    """Quote many rings at once, all from one model version."""
    if len(body.carats) > settings.MAX_PREDICT_CARATS:
        raise too_long(["body", "carats"], settings.MAX_PREDICT_CARATS, len(body.carats))
    model = await _serving(cache)
    carats = np.asarray(body.carats, dtype=np.float64)
    # A big request is milliseconds of work: off the event loop, which every other request
    # shares; and tens of megabytes while it is written: a few at a time per process, or
    # twenty at once took a worker from 185 MB to 860 MB.
    with _priceable(["body", "carats"]):
        if len(carats) > QUOTES_ON_THE_LOOP:
            async with quote_slots:
                content = await run_in_threadpool(
                    many_quotes_json, model.line, model.version, carats
                )
        else:
            content = many_quotes_json(model.line, model.version, carats)
    metrics.predictions.inc(len(carats))
    return Response(content, media_type="application/json")
