from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy.orm import Session

from app.deps import AdminDep, ModelCacheDep, ReaderDep, ReadSession, WriteSession
from app.orm import ModelVersion
from app.schemas import (
    MAX_ID,
    CostHistory,
    LiveError,
    ModelVersionList,
    ModelVersionPublic,
    to_money,
)
from app.services import registry
from app.services.aggregates import live_errors

router = APIRouter(prefix="/api/v1/models", tags=["models"])

Version = Annotated[int, Path(ge=1, le=MAX_ID)]


def present_all(
    session: Session, rows: list[ModelVersion], active: int | None
) -> list[ModelVersionPublic]:
    live = live_errors(session, rows)
    return [_public(row, active, *live[row.version]) for row in rows]


def present(session: Session, row: ModelVersion, active: int | None) -> ModelVersionPublic:
    return present_all(session, [row], active)[0]


def _public(
    row: ModelVersion, active: int | None, n_live: int, mae_live: float | None
) -> ModelVersionPublic:
    return ModelVersionPublic(
        version=row.version,
        status=row.status,
        active=row.version == active,
        silver_price=to_money(row.silver_price),
        gold_price_per_carat=to_money(row.gold_price_per_carat),
        n_samples=row.n_samples,
        iterations=row.iterations,
        converged=row.converged,
        metrics=row.metrics,
        parameters=row.parameters,
        filters=row.filters,
        trained_at=row.created_at,
        training_seconds=row.training_seconds,
        live=LiveError(n_sales=n_live, mae=mae_live),
    )


@router.get("", response_model=ModelVersionList)
def list_models(_: ReaderDep, session: ReadSession) -> ModelVersionList:
    """Every trained version, newest first."""
    active = registry.active_version(session)
    rows = registry.list_versions(session)
    return ModelVersionList(items=present_all(session, rows, active))


@router.get("/active", response_model=ModelVersionPublic)
def active_model(_: ReaderDep, session: ReadSession) -> ModelVersionPublic:
    """The version that answers predictions now."""
    row = registry.get_active(session)
    return present(session, row, row.version)


@router.get("/{version}", response_model=ModelVersionPublic)
def get_model(version: Version, _: ReaderDep, session: ReadSession) -> ModelVersionPublic:
    """One version."""
    return present(
        session, registry.get_version(session, version), registry.active_version(session)
    )


@router.get("/{version}/cost-history", response_model=CostHistory)
def cost_history(version: Version, _: ReaderDep, session: ReadSession) -> CostHistory:
    """The cost J by iteration during the fit (at most 1,000 points)."""
    return CostHistory.model_validate(registry.get_version(session, version).cost_history)


@router.post("/{version}/activate", response_model=ModelVersionPublic)
def activate(
    version: Version, _: AdminDep, session: WriteSession, cache: ModelCacheDep
) -> ModelVersionPublic:
    """Serve this version from now on (roll forward or back)."""
    row = registry.activate(session, version)
    # Commit before dropping the cache, so this worker's next refresh reads the new pointer.
    session.commit()
    cache.invalidate()
    return present(session, row, row.version)
