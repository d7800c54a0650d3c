"""The schema comes only from the migrations: up, down and up again, equal to the ORM."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app import migrate
from app.config import Settings
from app.db import Database
from app.orm import Base


@pytest.fixture
def empty_database(database_url: str) -> Database:
    db = Database(Settings(DATABASE_URL=database_url))
    migrate.downgrade(db.engine, "base")
    return db


def test_upgrade_downgrade_upgrade(empty_database: Database) -> None:
    db = empty_database
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(db.engine)
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert {"stores", "sales", "model_versions", "active_model", "idempotency_keys"} <= tables
    migrate.downgrade(db.engine, "base")
    assert migrate.current_revision(db.engine) is None
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(db.engine)
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    db.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}"))
    with db.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == 5000
    db.dispose()
