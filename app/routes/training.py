from datetime import timedelta

from fastapi import APIRouter

from app import training
from app.deps import (
    AdminDep,
    DatabaseDep,
    LiveDep,
    MetricsDep,
    ModelCacheDep,
    SettingsDep,
)
from app.errors import AppError
from app.lease import TrainingBusy
from app.live import NO_SALES
from app.routes import JsonRoute
from app.schemas.registry import ModelVersionPublic, TrainRequest

router = APIRouter(prefix="/api/v1", tags=["models"], route_class=JsonRoute)


@router.post("/train", status_code=201, response_model=ModelVersionPublic)
def train(
    _: AdminDep,
    db: DatabaseDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    cache: ModelCacheDep,
    live: LiveDep,
    body: TrainRequest | None = None,
) -> ModelVersionPublic:
    """Fit a new version from the stored sales; it becomes active when it converged.

    The request's transaction only checks the key: a training run takes its lease, reads its
    snapshot and writes its version in transactions of its own.
    """
    try:
        lease_ttl = timedelta(seconds=settings.TRAINING_LEASE_SECONDS)
        row, active = training.train(db, body or TrainRequest(), lease_ttl)
    except TrainingBusy:
        metrics.training_runs.labels("busy").inc()
        raise
    except AppError:
        metrics.training_runs.labels("refused").inc()
        raise
    metrics.training_runs.labels(row.status).inc()
    cache.invalidate()
    live.invalidate()
    # Its live accuracy as of its watermark: none yet, and no query to say so. The registry
    # counts the sales above it (on PostgreSQL, a few may have been committed between the
    # watermark and the snapshot already).
    return ModelVersionPublic.from_row(row, active=active, live=NO_SALES)
