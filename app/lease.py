"""One training at a time across every process.

PostgreSQL: a session advisory lock on the connection the run reads and writes through (one
connection, so no round trip is spent on a second), which the server drops if that connection
dies. SQLite: a lease row with an expiry, taken, renewed and released in short write transactions,
so the database is never locked while a fit computes; a killed holder stops renewing and its
lease expires within one lease time.
"""

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.exc import OperationalError

from app.db import Database, backend, rows_changed
from app.errors import Conflict
from app.orm import TrainingLease, utcnow

log = logging.getLogger(__name__)

# Any constant: the key of the advisory lock that means "a training is running".
ADVISORY_LOCK_KEY = 0x6A657765  # "jewe"


class TrainingBusy(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "another training run is in progress; retry when it has finished",
            headers={"Retry-After": "5"},
        )


@contextmanager
def training_lease(db: Database, connection: Connection, ttl: timedelta) -> Iterator[None]:
    """Hold the lease while the block runs; ``connection`` is the run's own (PostgreSQL takes
    the lock on it), outside any transaction."""
    if backend(db.engine) == "sqlite":
        with _lease_row(db, ttl):
            yield
    else:
        with _advisory_lock(connection):
            yield


@contextmanager
def _advisory_lock(connection: Connection) -> Iterator[None]:
    # Each statement its own transaction: the lock outlives transactions, and the run's own
    # transactions begin and end between these two.
    connection.execution_options(isolation_level="AUTOCOMMIT")
    taken = connection.scalar(select(func.pg_try_advisory_lock(ADVISORY_LOCK_KEY)))
    connection.commit()
    if not taken:
        raise TrainingBusy()
    try:
        yield
    finally:
        # A connection that broke took the lock with it.
        if not connection.invalidated:
            connection.rollback()  # whatever the run left open, if anything
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.scalar(select(func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
            connection.commit()


@contextmanager
def _lease_row(db: Database, ttl: timedelta) -> Iterator[None]:
    holder = uuid.uuid4().hex
    with db.session(write=True) as session:
        now = utcnow()
        taken = rows_changed(
            session.execute(
                update(TrainingLease)
                .where(
                    TrainingLease.id == 1,
                    or_(TrainingLease.holder.is_(None), TrainingLease.expires_at < now),
                )
                .values(holder=holder, expires_at=now + ttl)
            )
        )
    if taken != 1:
        raise TrainingBusy()
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(db, holder, ttl, stop), name="training-lease", daemon=True
    )
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with db.session(write=True) as session:
            session.execute(
                update(TrainingLease)
                .where(TrainingLease.id == 1, TrainingLease.holder == holder)
                .values(holder=None, expires_at=None)
            )


def _renew(db: Database, holder: str, ttl: timedelta, stop: threading.Event) -> None:
    while not stop.wait(ttl.total_seconds() / 3):
        try:
            with db.session(write=True) as session:
                session.execute(
                    update(TrainingLease)
                    .where(TrainingLease.id == 1, TrainingLease.holder == holder)
                    .values(expires_at=utcnow() + ttl)
                )
        except OperationalError as exc:  # a busy database: the next renewal may get through
            log.warning("could not renew the training lease: %s", exc.orig)
