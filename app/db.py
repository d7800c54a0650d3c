"""The engine, and the sessions the service opens.

A request's session is app/deps.py's SessionDep (one transaction, committed when the route
returns); training, the CSV import, the group commit of single sales (app/group_commit.py)
and the per-process caches open their own here.
"""

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import SQLITE_BUSY_CODES
from app.files import PRIVATE_FILE, create_sqlite_file

# Execution option that makes a SQLite transaction take the write lock when it begins, so a
# writer waits for the lock up front (busy timeout) instead of failing half-way on upgrade.
SQLITE_BEGIN = "jewelry_sqlite_begin"
# SQLite result codes (low byte) after which a pooled connection must not be reused: a
# connection opened while the file was not writable stays read-only for good.
_SQLITE_READONLY, _SQLITE_IOERR = 8, 10
_TURNS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
# How often a writer tries for its turn: a blocking wait would wake at once, but for no
# longer than the busy timeout it cannot be bounded. A group holds the turn for about a
# millisecond, so the time between tries is time the database sits idle: trying every
# 0.1 ms rather than 0.5 ms took single sales with an Idempotency-Key from 2,100-2,650 to
# 2,800-3,000 a second (2 workers, 16 connections).
TURN_POLL_SECONDS = 0.0001


def backend(target: Session | Connection | Engine | str) -> str:
    """The kind of database (``"sqlite"`` or ``"postgresql"``) behind a session, a connection,
    an engine or a URL: the one way the code asks."""
    if isinstance(target, str):
        return make_url(target).get_backend_name()
    bind = target.get_bind() if isinstance(target, Session) else target
    return bind.dialect.name


def _with_statement_timeout(given: str | tuple[str, ...] | None, settings: Settings) -> str:
    """The URL's own ``options`` (a search_path, say), which connect_args would replace,
    and the statement timeout."""
    own = " ".join((given,) if isinstance(given, str) else given or ())
    return f"{own} -c statement_timeout={settings.DB_STATEMENT_TIMEOUT_MS}".strip()


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.DATABASE_URL)
    if backend(settings.DATABASE_URL) != "sqlite":
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=settings.DB_POOL_SIZE,
            max_overflow=settings.DB_MAX_OVERFLOW,
            connect_args={"options": _with_statement_timeout(url.query.get("options"), settings)},
        )

    engine = create_engine(
        url,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
        connect_args={"check_same_thread": False},
    )
    busy_ms = settings.SQLITE_BUSY_TIMEOUT_MS

    if url.database and url.database != ":memory:":
        database = Path(url.database)

        @event.listens_for(engine, "do_connect")
        def _create_private_file(*_: Any) -> None:
            # Here rather than now: building an engine (importing app.main does) stays
            # free of side effects on disk.
            create_sqlite_file(database)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (the dialect's documented recipe) so that
        # BEGIN IMMEDIATE below is what actually starts each write transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        _write_ahead_log(cursor, busy_ms / 1000)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    @event.listens_for(engine, "handle_error")
    def _drop_broken_connections(context: Any) -> None:
        code = getattr(context.original_exception, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_SQLITE_READONLY, _SQLITE_IOERR):
            context.is_disconnect = True

    return engine


def _write_ahead_log(cursor: Any, patience: float) -> None:
    """Put a SQLite file in WAL mode, which it then keeps. A file not yet in it refuses the
    change at once, without the busy timeout, while another connection writes (two workers
    starting together on a new database, one of them migrating): try again until the busy
    timeout has passed."""
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in SQLITE_BUSY_CODES or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Database:
    """The engine plus the two kinds of session the service opens."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings)
        # Connections the pool gives out at most (then a checkout waits, up to 30 s).
        self.capacity = settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW
        # PostgreSQL: how long a statement may run, in seconds (None: no limit).
        self.statement_timeout = settings.DB_STATEMENT_TIMEOUT_MS / 1000 or None
        writer = self.engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        # One snapshot for every statement of a transaction: SQLite's read transactions in WAL
        # mode are snapshots already; PostgreSQL's default (READ COMMITTED) is not.
        snapshot = (
            self.engine
            if backend(self.engine) == "sqlite"
            else self.engine.execution_options(isolation_level="REPEATABLE READ")
        )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        self._snapshot = sessionmaker(snapshot, expire_on_commit=False)
        database = self.engine.url.database
        self._busy_seconds = settings.SQLITE_BUSY_TIMEOUT_MS / 1000
        self._turns = (
            Path(f"{database}-writers")
            if backend(self.engine) == "sqlite" and database and database != ":memory:"
            else None
        )

    @contextmanager
    def writers_turn(self) -> Iterator[None]:
        """On a SQLite file, wait for this process's turn among the processes' busiest writers
        (the group commits of single sales), by a lock on a file beside the database.

        SQLite's own wait for its write lock backs off to 100 ms between tries, while the
        process that has just committed takes the lock again for its next group: in a test
        of two processes committing groups in a loop one waited 90-550 ms at p99 and did up to
        half as many groups as the other. Trying the file lock every half millisecond (now
        every TURN_POLL_SECONDS), they waited 60-80 ms at p99 on a loaded machine and did as
        many groups each. After the
        busy timeout the writer goes on without its turn (a stopped process may hold it):
        SQLite's lock, and its own timeout, still keep the writes apart.
        """
        try:
            descriptor = -1 if self._turns is None else os.open(self._turns, _TURNS, PRIVATE_FILE)
        except OSError:
            descriptor = -1  # a read-only directory, say: SQLite's own lock keeps order
        try:
            deadline = time.monotonic() + self._busy_seconds
            while descriptor >= 0:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(TURN_POLL_SECONDS)
            yield
        finally:
            if descriptor >= 0:
                os.close(descriptor)  # which lets go of the lock, if held

    @contextmanager
    def session(self, *, write: bool = False, snapshot: bool = False) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises.

        ``snapshot=True``: a read-only session whose statements all see the same data.
        """
        factory = self._write if write else self._snapshot if snapshot else self._read
        with factory() as session, committing(session):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def committing(session: Session) -> Iterator[None]:
    """Commit the session when the block succeeds; roll it back when it raises."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def begin_writing(session: Session) -> None:
    """Begin the session's transaction as a writer: on SQLite BEGIN IMMEDIATE takes the write
    lock at once (waiting up to the busy timeout), so that the transaction cannot fail half-way
    when a read would turn into a write. A no-op beyond that on PostgreSQL."""
    if session.in_transaction():
        raise RuntimeError("the transaction began before it was said to write")
    session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})


@contextmanager
def driver_cursor(session: Session, statement: str) -> Iterator[Any]:
    """A cursor of the DB-API connection under the session's own, for what SQLAlchemy cannot
    run (PostgreSQL's COPY, two statements in one round trip). Its errors are raised as
    SQLAlchemy's (``statement`` names the work), which the app's handlers answer: a 503 for
    a database gone, not a 500."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    assert driver is not None
    dialect = connection.dialect
    try:
        with driver.cursor() as cursor:
            yield cursor
    except dialect.loaded_dbapi.Error as exc:
        gone = dialect.is_disconnect(exc, driver, None)
        if gone:  # as SQLAlchemy does: the pool must not hand this connection out again
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone
        ) from exc


def placeholder(session: Session) -> str:
    """How a DB-API statement of the session's backend marks a parameter."""
    return "?" if backend(session) == "sqlite" else "%s"


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (SQLAlchemy types execute()'s result as the
    general Result, which for these statements is always a CursorResult)."""
    return cast(CursorResult[Any], result).rowcount


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run ``action`` once the session's transaction has committed; never if it rolls back."""
    event.listen(session, "after_commit", lambda _: action(), once=True)
