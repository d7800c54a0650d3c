"""Fitting a new model version from the stored sales.

The sufficient statistics come from one aggregate query; the fit runs with no transaction open
and no lock held; the new version and its activation are written in one short transaction.
"""

import time
from datetime import timedelta

from app.db import Database
from app.errors import Unprocessable
from app.orm import ModelVersion
from app.schemas import Method, TrainRequest
from app.services import registry
from app.services.aggregates import (
    SalesFilter,
    mean_absolute_error,
    sale_chunks,
    sufficient_statistics,
)
from app.services.lease import training_lease
from models import ModelError, RingPriceRegressor


def _regressor(request: TrainRequest) -> RingPriceRegressor:
    return RingPriceRegressor(
        learning_rate=request.learning_rate,
        max_iterations=request.max_iterations,
        tolerance=request.tolerance if request.tolerance is not None else 1e-10,
        feature_scaling=request.feature_scaling,
        method=request.method.value,
        batch_size=request.batch_size,
        epochs=request.epochs,
        random_seed=request.random_seed,
    )


def train(db: Database, request: TrainRequest, lease_ttl: timedelta) -> ModelVersion:
    """Fit, store and (when it should) activate a new version, one run at a time.

    Raises Unprocessable for data or settings the learning core refuses (then nothing is
    stored) and TrainingBusy while another run holds the lease.
    """
    if request.sold_since and request.sold_until and request.sold_since >= request.sold_until:
        raise Unprocessable("sold_until: must be later than sold_since")
    with training_lease(db, lease_ttl):
        return _train(db, request)


def _train(db: Database, request: TrainRequest) -> ModelVersion:
    where = SalesFilter(
        store_ids=tuple(request.store_ids) if request.store_ids else None,
        sold_since=request.sold_since,
        sold_until=request.sold_until,
    )
    started = time.perf_counter()
    with db.session() as session:
        stats, through_id = sufficient_statistics(session, where)
    where = where.through(through_id)
    regressor = _regressor(request)
    try:
        if request.method is Method.batch:
            regressor.fit_stats(stats)
        else:
            regressor.fit_chunks(stats, lambda: sale_chunks(db, where))
    except ModelError as exc:
        raise Unprocessable(str(exc)) from None
    with db.session() as session:
        _, mae = mean_absolute_error(
            session, where, regressor.silver_price_, regressor.gold_price_per_carat_
        )
    seconds = time.perf_counter() - started

    # A fixed budget (tolerance 0, or epochs of mini-batch/SGD) is complete when it has run.
    fixed_budget = request.method is not Method.batch or request.tolerance == 0
    status = (
        "converged" if regressor.converged_ else "completed" if fixed_budget else "not_converged"
    )
    report = regressor.report_.with_mae(mae) if mae is not None else regressor.report_
    version = ModelVersion(
        status=status,
        method=request.method.value,
        parameters=regressor.get_params(),
        filters=where.describe(),
        silver_price=regressor.silver_price_,
        gold_price_per_carat=regressor.gold_price_per_carat_,
        metrics={
            **report.to_dict(),
            "gradient_norm": regressor.gradient_norm_,
            "optimum": {
                "silver_price": regressor.optimum_[0],
                "gold_price_per_carat": regressor.optimum_[1],
            },
            "optimum_gap": regressor.optimum_gap_,
        },
        iterations=regressor.n_iter_,
        converged=regressor.converged_,
        n_samples=stats.n,
        training_seconds=seconds,
        cost_history={
            "iterations": regressor.cost_history_.iterations,
            "cost": regressor.cost_history_.cost,
        },
        estimator=regressor.to_dict(),
        trained_through_sale_id=through_id,
    )
    with db.session(write=True) as session:
        session.add(version)
        session.flush()
        if request.activate and status != "not_converged":
            registry.activate(session, version.version)
    return version
