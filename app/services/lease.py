"""One training at a time across every process.

PostgreSQL: a session advisory lock, which the server drops if the holder's connection dies.
SQLite: a lease row with an expiry, taken and released in short write transactions, so the
database is never locked while a fit computes; a killed holder's lease expires.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import func, or_, select, update

from app.db import Database
from app.errors import Conflict
from app.orm import TrainingLease, utcnow

# Any constant: the key of the advisory lock that means "a training is running".
ADVISORY_LOCK_KEY = 0x6A657765  # "jewe"


class TrainingBusy(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "another training run is in progress; retry when it has finished",
            headers={"Retry-After": "5"},
        )


@contextmanager
def training_lease(db: Database, ttl: timedelta) -> Iterator[None]:
    if db.is_sqlite:
        with _lease_row(db, ttl):
            yield
    else:
        with _advisory_lock(db):
            yield


@contextmanager
def _advisory_lock(db: Database) -> Iterator[None]:
    with db.engine.connect() as connection:
        taken = connection.scalar(select(func.pg_try_advisory_lock(ADVISORY_LOCK_KEY)))
        connection.commit()
        if not taken:
            raise TrainingBusy()
        try:
            yield
        finally:
            connection.scalar(select(func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
            connection.commit()


@contextmanager
def _lease_row(db: Database, ttl: timedelta) -> Iterator[None]:
    holder = uuid.uuid4().hex
    with db.session(write=True) as session:
        now = utcnow()
        taken = session.execute(
            update(TrainingLease)
            .where(
                TrainingLease.id == 1,
                or_(TrainingLease.holder.is_(None), TrainingLease.expires_at < now),
            )
            .values(holder=holder, expires_at=now + ttl)
        ).rowcount
    if taken != 1:
        raise TrainingBusy()
    try:
        yield
    finally:
        with db.session(write=True) as session:
            session.execute(
                update(TrainingLease)
                .where(TrainingLease.id == 1, TrainingLease.holder == holder)
                .values(holder=None, expires_at=None)
            )
