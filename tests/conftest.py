"""Shared fixtures: a migrated database per backend and an in-process client per test.

Every API test runs on SQLite, and on PostgreSQL too when JEWELRY_TEST_POSTGRES_URL is set
(as .ci/run does).
"""

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text

from app import migrate
from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.helpers import ADMIN_KEY

POSTGRES_URL = os.environ.get("JEWELRY_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgres"] if POSTGRES_URL else [])]
TABLES = "sales, deleted_sales, idempotency_keys, stores, admin_keys"

# Property tests explore the same examples on every run, so CI is reproducible; set
# HYPOTHESIS_PROFILE=explore to search fresh ones.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis_settings.register_profile("explore", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(Settings(DATABASE_URL=f"sqlite:///{path}"))
    migrate.upgrade(db.engine)
    with db.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> str:
    assert POSTGRES_URL is not None
    db = Database(Settings(DATABASE_URL=POSTGRES_URL))
    with db.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(db.engine)
    db.dispose()
    return POSTGRES_URL


def reset_postgres(url: str) -> None:
    db = Database(Settings(DATABASE_URL=url))
    with db.engine.begin() as connection:
        # model_versions cascades to active_model, whose single row the migration made.
        connection.execute(text(f"TRUNCATE {TABLES}, model_versions RESTART IDENTITY CASCADE"))
        connection.execute(text("INSERT INTO active_model (id) VALUES (1)"))
    db.dispose()


def fresh_database(request: pytest.FixtureRequest, backend: str, directory: Path) -> str:
    """The URL of a migrated, empty database: a copy of the SQLite template in ``directory``,
    or the PostgreSQL test database emptied. For fixtures of any scope."""
    if backend == "sqlite":
        path = directory / "jewelry.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_ready")
    reset_postgres(url)
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database(request, request.param, tmp_path)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """For what only SQLite has (its file, its lock, its lease)."""
    return fresh_database(request, "sqlite", tmp_path)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(DATABASE_URL=database_url, ADMIN_API_KEY=ADMIN_KEY)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


ClientWith = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def client_with(settings: Settings) -> ClientWith:
    """A client of an app on the test's database with some settings changed, e.g.
    ``with client_with(MAX_PAGE_SIZE=10) as client:``."""

    @contextmanager
    def make(**changes: Any) -> Iterator[TestClient]:
        with TestClient(create_app(settings.model_copy(update=changes))) as test_client:
            yield test_client

    return make


@pytest.fixture
def pg_settings(request: pytest.FixtureRequest) -> Settings:
    """For the few behaviours only PostgreSQL has; CI always sets JEWELRY_TEST_POSTGRES_URL."""
    if not POSTGRES_URL:
        pytest.skip("needs PostgreSQL: set JEWELRY_TEST_POSTGRES_URL (CI does)")
    url = request.getfixturevalue("postgres_ready")
    reset_postgres(url)
    return Settings(DATABASE_URL=url, ADMIN_API_KEY=ADMIN_KEY)
