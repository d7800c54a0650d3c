"""The model registry: versions, the active pointer, and how each version does live."""

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.orm import ActiveModel, ModelVersion, utcnow


class NoActiveModel(Conflict):
    def __init__(self) -> None:
        super().__init__("no model is active yet: POST /api/v1/train to train one")


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
        raise NoActiveModel()
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
