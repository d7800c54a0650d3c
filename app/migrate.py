"""Schema migrations, run through Alembic's API: the only way the schema changes."""

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select, text

from app.db import SQLITE_BEGIN, backend

# Installed beside app/ (the wheel packages both).
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Key of the advisory lock that serialises schema changes and first-start setup on PostgreSQL.
STARTUP_LOCK_KEY = 0x6A66_6D69  # "jfmi"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


def serialise_startup(connection: Connection) -> None:
    """Hold the startup lock until this transaction ends, so that workers starting together
    migrate and set up one after the other (SQLite: BEGIN IMMEDIATE does it)."""
    if backend(connection) == "postgresql":
        # A schema change on a large table, and the wait for another worker's, may take
        # longer than the statement timeout allows a request's statements.
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(select(func.pg_advisory_xact_lock(STARTUP_LOCK_KEY)))


def _run(engine: Engine, step: str, revision: str) -> None:
    config = alembic_config()
    with engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin() as connection:
        serialise_startup(connection)
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, "downgrade", revision)


@cache
def head_revision() -> str | None:
    """The newest migration shipped with this code (read from disk once per process)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
