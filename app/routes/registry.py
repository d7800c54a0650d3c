from collections.abc import Sequence

from fastapi import APIRouter, Response
from starlette.convertors import StringConvertor, register_url_convertor

from app.db import after_commit
from app.deps import WRITES, AdminDep, LiveDep, ModelCacheDep, PageLimit, SessionDep
from app.fields import Cursor, RowId
from app.live import LiveAccuracyTracker
from app.orm import ModelVersion
from app.routes import JsonRoute
from app.schemas.registry import (
    CostSurface,
    DescentHistory,
    ModelVersionPage,
    ModelVersionPublic,
)
from app.services import registry
from models import ModelError, SufficientStats
from models.descent import FeatureSpace, Quadratic

router = APIRouter(prefix="/api/v1/models", tags=["models"], route_class=JsonRoute)


class _VersionSegment(StringConvertor):
    """Any path segment but ``active``, whose own route must answer its other methods 405."""

    regex = r"(?!active$)[^/]+"


register_url_convertor("version", _VersionSegment())


def present(
    rows: Sequence[ModelVersion], active: int | None, live: LiveAccuracyTracker
) -> list[ModelVersionPublic]:
    """Versions as the API shows them, with their live accuracy."""
    accuracy = live.of(rows)
    return [
        ModelVersionPublic.from_row(row, active=active, live=accuracy[row.version]) for row in rows
    ]


@router.get("", response_model=ModelVersionPage)
def list_models(
    session: SessionDep, live: LiveDep, limit: PageLimit, cursor: Cursor | None = None
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
def active_model(session: SessionDep, live: LiveDep) -> ModelVersionPublic:
    """The version that answers predictions now."""
    row = registry.get_active(session)
    return present([row], row.version, live)[0]


# Not :int: a path that cannot name a version (/models/-1, /models/x) is a 422 naming
# {version}, as /models/0 is; one that could but does not is a 404.
@router.get("/{version:version}", response_model=ModelVersionPublic)
def get_model(version: RowId, session: SessionDep, live: LiveDep) -> ModelVersionPublic:
    """One version."""
    row = registry.get_version(session, version)
    return present([row], registry.active_version(session), live)[0]


@router.get("/{version:version}/cost-history", response_model=DescentHistory)
def cost_history(version: RowId, session: SessionDep) -> DescentHistory:
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


@router.post(
    "/{version:version}/activate", response_model=ModelVersionPublic, dependencies=[WRITES]
)
def activate(
    version: RowId, _: AdminDep, session: SessionDep, cache: ModelCacheDep, live: LiveDep
) -> ModelVersionPublic:
    """Serve this version from now on (roll forward or back)."""
    row = registry.activate(session, version)
    # Once committed, so that this worker's next quote reads the new pointer.
    after_commit(session, cache.invalidate)
    return present([row], row.version, live)[0]


@router.delete("/{version:version}", status_code=204, dependencies=[WRITES])
def delete_model(version: RowId, _: AdminDep, session: SessionDep, live: LiveDep) -> Response:
    """Drop a version that is not active (409 for the active one)."""
    registry.delete_version(session, version)
    after_commit(session, live.invalidate)
    return Response(status_code=204)
