from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.deps import (
    AdminDep,
    LiveDep,
    ModelCacheDep,
    PageLimit,
    ReaderDep,
    ReadSession,
    WriteSession,
)
from app.fields import MAX_ID, Cursor
from app.live import Accuracy, LiveAccuracyTracker
from app.orm import ModelVersion
from app.routes import JsonRoute
from app.schemas.registry import (
    CostSurface,
    DescentHistory,
    LiveAccuracy,
    ModelVersionPage,
    ModelVersionPublic,
)
from app.services import registry
from models import ModelError, SufficientStats
from models.descent import FeatureSpace, Quadratic

router = APIRouter(prefix="/api/v1/models", tags=["models"], route_class=JsonRoute)

Version = Annotated[int, Path(ge=1, le=MAX_ID)]


def present(
    rows: Sequence[ModelVersion], active: int | None, live: LiveAccuracyTracker
) -> list[ModelVersionPublic]:
    """Versions as the API shows them, with their live accuracy."""
    accuracy = live.of(rows)
    return [_public(row, active, accuracy[row.version]) for row in rows]


def _public(row: ModelVersion, active: int | None, accuracy: Accuracy) -> ModelVersionPublic:
    return ModelVersionPublic(
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
        live=LiveAccuracy(n_sales=accuracy.n_sales, rmse=accuracy.rmse, bias=accuracy.bias),
    )


@router.get("", response_model=ModelVersionPage)
def list_models(
    _: ReaderDep,
    session: ReadSession,
    live: LiveDep,
    limit: PageLimit,
    cursor: Cursor | None = None,
) -> ModelVersionPage:
    """Trained versions, newest first, a page at a time."""
    active = registry.active_version(session)
    rows = registry.list_versions(
        session, limit=limit + 1, before=int(cursor) if cursor is not None else None
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return ModelVersionPage(
        items=present(rows, active, live),
        next_cursor=str(rows[-1].version) if more else None,
    )


@router.get("/active", response_model=ModelVersionPublic)
def active_model(_: ReaderDep, session: ReadSession, live: LiveDep) -> ModelVersionPublic:
    """The version that answers predictions now."""
    row = registry.get_active(session)
    return present([row], row.version, live)[0]


@router.get("/{version:int}", response_model=ModelVersionPublic)
def get_model(
    version: Version, _: ReaderDep, session: ReadSession, live: LiveDep
) -> ModelVersionPublic:
    """One version."""
    row = registry.get_version(session, version)
    return present([row], registry.active_version(session), live)[0]


@router.get("/{version:int}/cost-history", response_model=DescentHistory)
def cost_history(version: Version, _: ReaderDep, session: ReadSession) -> DescentHistory:
    """The cost J and the two prices by iteration during the fit (at most 1,000 points),
    and the cost surface they went down."""
    row = registry.get_version(session, version)
    return DescentHistory(
        iterations=row.cost_history["iterations"],
        cost=row.cost_history["cost"],
        path=row.cost_history.get("path", []),
        surface=_surface(row),
    )


def _surface(row: ModelVersion) -> CostSurface | None:
    try:
        stats = SufficientStats.from_dict(row.estimator["stats"])
        q = Quadratic.from_stats(stats, FeatureSpace.raw())
    except (KeyError, TypeError, ModelError, ArithmeticError):
        return None
    mean_xx = q.vx + q.mx * q.mx
    return CostSurface(
        optimum=q.optimum(), min_cost=q.min_cost, hessian=((1.0, q.mx), (q.mx, mean_xx))
    )


@router.post("/{version:int}/activate", response_model=ModelVersionPublic)
def activate(
    version: Version, _: AdminDep, session: WriteSession, cache: ModelCacheDep, live: LiveDep
) -> ModelVersionPublic:
    """Serve this version from now on (roll forward or back)."""
    row = registry.activate(session, version)
    # Commit before dropping the cache, so this worker's next refresh reads the new pointer.
    session.commit()
    cache.invalidate()
    return present([row], row.version, live)[0]


@router.delete("/{version:int}", status_code=204)
def delete_model(version: Version, _: AdminDep, session: WriteSession, live: LiveDep) -> Response:
    """Drop a version that is not active (409 for the active one)."""
    registry.delete_version(session, version)
    session.commit()
    live.invalidate()
    return Response(status_code=204)
