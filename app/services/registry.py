"""The model registry: versions and the one pointer to the version that serves."""

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.orm import ActiveModel, ModelVersion, VersionStatus, utcnow


class NoActiveModel(Conflict):
    def __init__(self) -> None:
        super().__init__("no model is active yet: POST /api/v1/train to train one")


def active_version(session: Session, *, lock: bool = False) -> int | None:
    """The serving version; ``lock`` holds the pointer until the transaction ends, so that an
    activation and a deletion never interleave."""
    query = select(ActiveModel.version).where(ActiveModel.id == 1)
    return session.scalar(query.with_for_update() if lock else query)


def list_versions(session: Session, *, limit: int, before: int | None) -> list[ModelVersion]:
    """Up to ``limit`` versions, newest first, older than ``before`` when given."""
    query = select(ModelVersion).order_by(ModelVersion.version.desc()).limit(limit)
    if before is not None:
        query = query.where(ModelVersion.version < before)
    return list(session.scalars(query))


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
    """Point the service at a version: one UPDATE, so readers see the old or the new one.
    The pointer is locked first, so that an activation and a deletion never interleave."""
    active_version(session, lock=True)
    row = get_version(session, version)
    if row.status is VersionStatus.not_converged:
        raise Conflict(f"model version {version} did not converge and cannot be activated")
    point_at(session, version)
    return row


def point_at(session: Session, version: int) -> None:
    """Move the pointer to a version known to exist and to be fit to serve."""
    session.execute(
        update(ActiveModel)
        .where(ActiveModel.id == 1)
        .values(version=version, activated_at=utcnow())
    )


def delete_version(session: Session, version: int) -> None:
    """Drop a version that does not serve; the active one must be replaced first."""
    if active_version(session, lock=True) == version:
        raise Conflict(
            f"model version {version} is active: activate another version before deleting it"
        )
    get_version(session, version)
    session.execute(delete(ModelVersion).where(ModelVersion.version == version))
