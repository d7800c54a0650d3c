"""The model registry: versions, the active pointer, and how each version does live."""

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.orm import ActiveModel, ModelVersion, utcnow
from app.services.aggregates import SalesFilter, mean_absolute_error


def active_version(session: Session) -> int | None:
    return session.scalar(select(ActiveModel.version).where(ActiveModel.id == 1))


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.version.desc())))


def get_version(session: Session, version: int) -> ModelVersion:
    row = session.get(ModelVersion, version)
    if row is None:
        raise NotFound(f"no model version {version}")
    return row


def get_active(session: Session) -> ModelVersion:
    version = active_version(session)
    if version is None:
        raise Conflict("no model is active yet: POST /api/v1/train to train one")
    return get_version(session, version)


def activate(session: Session, version: int) -> ModelVersion:
    """Point the service at a version: one UPDATE, so readers see the old or the new one."""
    row = get_version(session, version)
    if row.status == "not_converged":
        raise Conflict(f"model version {version} did not converge and cannot be activated")
    session.execute(
        update(ActiveModel)
        .where(ActiveModel.id == 1)
        .values(version=version, activated_at=utcnow())
    )
    return row


def live_error(session: Session, row: ModelVersion) -> tuple[int, float | None]:
    """Count and MAE of the version's quotes on sales recorded after it was trained."""
    return mean_absolute_error(
        session,
        SalesFilter(after_id=row.trained_through_sale_id),
        row.silver_price,
        row.gold_price_per_carat,
    )
