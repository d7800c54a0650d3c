"""Fitting a new model version from the stored sales.

A batch fit (the default) reads every matching sale once, in the one query that sums them
(app/services/aggregates.py; on SQLite, two connections sum half each, in two threads); the
mean absolute error, which needs the fitted line, is then measured on the newest MAE_SAMPLE of
them only, a bounded read. Mini-batch and stochastic fits read the rows once more per epoch.
All of it is read in one snapshot, so a sale recorded or deleted meanwhile changes none of it;
no write lock is held while the fit computes. The version's watermark (trained_through_sale_id)
splits the sales for good: every sale at or below it is in the snapshot the fit read, and every
sale committed later is above it, where the live accuracy counts it (app/live.py). On
PostgreSQL, where a transaction still writing may hold ids below ones already committed, that
takes waiting for such writers before the snapshot begins (_snapshot). The new version and its
activation are written all or nothing (registry.add_version), and only when every number it
holds can be shown.

On PostgreSQL a run is nine round trips, all on one connection: the pool's ping, the lock, the
last id drawn with the writers that may still commit ids up to it (then a look every few
milliseconds while any of them is still open), the snapshot's BEGIN, the sums (rarely twice:
_statistics), the MAE, COMMIT, the write, the unlock.
"""

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from app.db import SQLITE_BEGIN, Database, backend, begin_writing, committing
from app.errors import InvalidInput, Unavailable
from app.fields import MAX_CARATS, MAX_QUOTE, MIN_CARATS
from app.lease import training_lease
from app.orm import ModelVersion, Sale, VersionStatus
from app.schemas.registry import TrainRequest
from app.services import registry
from app.services.aggregates import (
    SalesFilter,
    check_period,
    mean_absolute_error,
    sale_chunks,
    sales_statistics,
)
from app.services.sales import last_drawn_sale_id, still_writing
from models import (
    DivergenceError,
    InvalidParameterError,
    ModelError,
    RingPriceRegressor,
    SufficientStats,
)


def _regressor(request: TrainRequest) -> RingPriceRegressor:
    return RingPriceRegressor(
        learning_rate=request.learning_rate,
        max_iterations=request.max_iterations,
        # Left out, the core's own default applies.
        **({"tolerance": request.tolerance} if request.tolerance is not None else {}),
        feature_scaling=request.feature_scaling,
        method=request.method,
        batch_size=request.batch_size,
        epochs=request.epochs,
        random_seed=request.random_seed,
    )


def _refused(exc: ModelError) -> InvalidInput:
    """The learning core's refusal as a 422 naming the field to change."""
    if isinstance(exc, DivergenceError):
        return InvalidInput.at(["body", "learning_rate"], str(exc), "diverges")
    if isinstance(exc, InvalidParameterError) and exc.parameter:
        return InvalidInput.at(["body", exc.parameter], str(exc))
    return InvalidInput.at(["body"], f"the sales cannot be fitted: {exc}", "training_data")


def _unshowable(regressor: RingPriceRegressor) -> str | None:
    """Why the fit cannot be stored and shown (None when it can): every estimate must be a
    finite number, and every quote over the carat range an amount of at most MAX_QUOTE."""
    numbers = [
        regressor.silver_price_,
        regressor.gold_price_per_carat_,
        regressor.gradient_norm_,
        *regressor.optimum_,
        *regressor.cost_history_.cost,
        *(v for v in _flat(regressor.report_.to_dict()) if v is not None),
    ]
    if not all(math.isfinite(v) for v in numbers):
        return "it holds numbers that are not finite"
    ends = np.array([MIN_CARATS, MAX_CARATS])
    quotes = [regressor.predict(ends)]
    bounds = regressor.prediction_interval(ends)
    if bounds is not None:
        quotes.extend(bounds)
    largest = float(np.max(np.abs(np.concatenate(quotes))))
    if not largest <= MAX_QUOTE:
        return (
            f"it would quote ${largest:.3g} for a ring of {MIN_CARATS:g} to {MAX_CARATS:g} "
            f"carats, more than the ${MAX_QUOTE:.0e} an amount may be"
        )
    return None


def _flat(value: Any) -> list[float | None]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flat(item)]
    if isinstance(value, list | tuple):
        return [v for item in value for v in _flat(item)]
    return [float(value)] if isinstance(value, int | float) else []


def train(
    db: Database, request: TrainRequest, lease_ttl: timedelta
) -> tuple[ModelVersion, int | None]:
    """Fit, store and (when it should) activate a new version, one run at a time; returns it
    with the version active once it was stored.

    Raises InvalidInput for data or settings the learning core refuses, or a fit that cannot
    be shown (then nothing is stored), and TrainingBusy while another run holds the lease.
    """
    check_period(("body",), request.sold_since, request.sold_until)
    # One connection from the lease to the write: on PostgreSQL every checkout costs a round
    # trip (the pool's ping), and the lock, the snapshot and the write go through this one.
    with db.engine.connect() as connection, training_lease(db, connection, lease_ttl):
        version = _fit(db, connection, request)
        return _store(connection, version, activate=request.activate)


def _fit(db: Database, connection: Connection, request: TrainRequest) -> ModelVersion:
    """The new version, not yet stored."""
    where = SalesFilter(
        store_ids=tuple(request.store_ids) if request.store_ids else None,
        sold_since=request.sold_since,
        sold_until=request.sold_until,
    )
    started = time.perf_counter()
    regressor = _regressor(request)
    with _snapshot(db, connection) as (sessions, settled):
        session = sessions[0]
        watermark, stats, read = _statistics(sessions, where, settled)
        try:
            if request.method == "batch":
                regressor.fit_stats(stats)
            else:
                regressor.fit_chunks(stats, lambda: sale_chunks(session, read), measure_mae=False)
        except ModelError as exc:
            raise _refused(exc) from None
        mae = mean_absolute_error(
            session, read, regressor.silver_price_, regressor.gold_price_per_carat_
        )
    seconds = time.perf_counter() - started
    problem = _unshowable(regressor)
    if problem is not None:
        raise InvalidInput.at(
            ["body"],
            f"the fit cannot be stored: {problem}; check the sales for carats or prices "
            "far from the rest",
            "unrepresentable_fit",
        )

    # A fixed budget (tolerance 0, or epochs of mini-batch/SGD) is complete when it has run.
    fixed_budget = request.method != "batch" or request.tolerance == 0
    status = (
        VersionStatus.converged
        if regressor.converged_
        else VersionStatus.completed
        if fixed_budget
        else VersionStatus.not_converged
    )
    report = regressor.report_.with_mae(mae) if mae is not None else regressor.report_
    return ModelVersion(
        status=status,
        method=request.method,
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
        cost_history=regressor.cost_history_.to_dict(),
        estimator=regressor.to_dict(serving=True),
        trained_through_sale_id=watermark,
    )


def _store(
    connection: Connection, version: ModelVersion, *, activate: bool
) -> tuple[ModelVersion, int | None]:
    """Write the version and, when asked and it may serve, point the service at it, all or
    nothing; returns it with the active version."""
    serve = activate and version.status is not VersionStatus.not_converged
    with _transaction(connection, write=True) as session:
        return version, registry.add_version(session, version, serve=serve)


class Settled(NamedTuple):
    """PostgreSQL: the highest sale id a run may read (_settled_sale_id), and whether it
    waited for writers to get it."""

    sale_id: int
    waited: bool


@contextmanager
def _snapshot(
    db: Database, connection: Connection
) -> Iterator[tuple[list[Session], Settled | None]]:
    """Sessions that all read one snapshot: the run's own and, on SQLite, a second on another
    connection, that sums half of the sales beside it (PostgreSQL parallelises its scans
    itself); on PostgreSQL, with the highest sale id to read (_statistics).

    On SQLite, where writers take turns and ids follow commits, every sale up to the newest
    id is in the snapshot. On PostgreSQL a transaction still writing may hold ids below ones
    already committed, so the snapshot begins once every writer that may hold one of the ids
    drawn so far has ended (_settled_sale_id): it holds every sale up to the last of those
    that there will ever be."""
    if backend(connection) == "postgresql":
        settled = _settled_sale_id(db, connection)
        with _transaction(connection, snapshot=True) as session:
            yield [session], settled
        return
    with _transaction(connection) as first, db.session(snapshot=True) as second:
        # Both begin to read while this holds the write lock: no commit comes between the
        # two, so they see the same sales. The lock is held for two reads of one row.
        with db.session(write=True) as lock:
            begin_writing(lock)
            for session in (first, second):
                session.execute(select(Sale.id).limit(1)).all()
        yield [first, second], None


def _statistics(
    sessions: list[Session], where: SalesFilter, settled: Settled | None
) -> tuple[int, SufficientStats, SalesFilter]:
    """The watermark, the statistics of the matching sales up to it, and the filter that
    reads those sales again.

    On PostgreSQL the watermark is at most the settled id: the snapshot may hold a few sales
    above it, committed since it was drawn, which are left to the live accuracy with the ones
    committed later. Bounding the scan by id costs a comparison a sale, a fifth of the sums'
    time, so the bound is left out when no writer was waited for (then sales above it are
    rare: they had a round trip or two to come in) and put in only if the newest id shows
    some."""
    if settled is None:
        return *sales_statistics(sessions, where), where
    if not settled.waited:
        watermark, stats = sales_statistics(sessions, where)
        if watermark <= settled.sale_id:
            return watermark, stats, where
    bounded = replace(where, through_id=settled.sale_id)
    return *sales_statistics(sessions, bounded), bounded


# Waits between looks at the writers a training waits for: a batch commits in milliseconds,
# a CSV import of a large file in seconds.
FIRST_PAUSE_SECONDS = 0.001
LONGEST_PAUSE_SECONDS = 0.05


class WritersBusy(Unavailable):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"sales that a training must include are still being written after {seconds:g} s;"
            " retry when they have been committed",
            retry_after=5,
        )


def _settled_sale_id(db: Database, connection: Connection) -> Settled:
    """PostgreSQL: the last sale id drawn, once the transactions that may still commit sales
    at or below it have ended.

    Those are waited for rather than locked out: a SHARE lock on the table would hold every
    new writer back, for as long as the slowest writer already running (a large CSV import)
    takes. No longer than a statement may run (DB_STATEMENT_TIMEOUT_MS), though: a writer
    still open then is refused with a 503 rather than holding the run's lease for good."""
    connection.execution_options(isolation_level="AUTOCOMMIT")
    drawn, writers = last_drawn_sale_id(connection)
    deadline = time.monotonic() + (db.statement_timeout or math.inf)
    pause = FIRST_PAUSE_SECONDS
    waited = bool(writers)
    while writers:
        if time.monotonic() >= deadline:
            raise WritersBusy(db.statement_timeout or 0.0)
        time.sleep(pause)
        pause = min(2 * pause, LONGEST_PAUSE_SECONDS)
        writers = still_writing(connection, writers)
    connection.commit()
    return Settled(drawn, waited)


@contextmanager
def _transaction(
    connection: Connection, *, snapshot: bool = False, write: bool = False
) -> Iterator[Session]:
    """A session on the run's connection that commits when the block succeeds and rolls back
    when it raises: as Database.session, on a connection already checked out. A snapshot's
    statements all see the same data (SQLite's read transactions are snapshots already); a
    writer on SQLite takes the write lock when it begins."""
    if backend(connection) == "postgresql":
        # A write is one statement (registry.add_version): in autocommit, no BEGIN and
        # COMMIT round trips around it.
        level = "REPEATABLE READ" if snapshot else "AUTOCOMMIT" if write else None
        connection.execution_options(isolation_level=level or connection.default_isolation_level)
    else:
        connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE" if write else "DEFERRED"})
    with Session(connection, expire_on_commit=False) as session, committing(session):
        yield session
