"""The model registry: versions and the one pointer to the version that serves."""

from typing import cast

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from app.db import backend
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


def add_version(session: Session, row: ModelVersion, *, serve: bool) -> int | None:
    """Store a new version and, with ``serve``, point the service at it (no row lock first, as
    activate takes: no one can delete a version not yet committed); returns the active
    version then.

    On PostgreSQL it is one statement (a WITH that inserts), so that in autocommit it is one
    round trip and still all or nothing; SQLite has no such WITH: there it is an INSERT and an
    UPDATE, in the caller's transaction."""
    if backend(session) != "postgresql":
        session.add(row)
        session.flush()
        if serve:
            point_at(session, row.version)
            return row.version
        return active_version(session)
    row.created_at = utcnow()
    columns = [c.key for c in ModelVersion.__table__.columns if c.key != "version"]
    new = (
        insert(ModelVersion)
        .values({key: getattr(row, key) for key in columns})
        .returning(ModelVersion.version)
        .cte("new_version")
    )
    if serve:
        moved = (
            update(ActiveModel)
            .where(ActiveModel.id == 1)
            .values(version=select(new.c.version).scalar_subquery(), activated_at=utcnow())
            .returning(ActiveModel.version)
            .add_cte(new)
        )
        # The pointer's column may be NULL; here it was just set to the new version.
        row.version = cast(int, session.execute(moved).scalar_one())
        return row.version
    pointer = select(ActiveModel.version).where(ActiveModel.id == 1).scalar_subquery()
    row.version, active = session.execute(select(new.c.version, pointer)).one()
    return active


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
