"""The settings sized for the machine: workers, PostgreSQL's pool and statement timeout."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app import cli, migrate
from app.config import Settings
from app.db import Database


@pytest.mark.parametrize(("argv", "workers"), [([], 3), (["--workers", "1"], 1)])
def test_serve_runs_jewelry_workers_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], workers: int
) -> None:
    import uvicorn

    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_, **options: ran.update(options))
    monkeypatch.setenv("JEWELRY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JEWELRY_WORKERS", "3")
    cli._run_uvicorn(cli.parser().parse_args(["serve", *argv]))
    assert ran["workers"] == workers


def test_the_default_suits_two_cores() -> None:
    settings = Settings(DATABASE_URL="sqlite://")
    assert settings.WORKERS == 2
    assert settings.WORKERS * (settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW) == 20


def test_the_pool_and_statement_timeout_are_settings(pg_settings: Settings) -> None:
    db = Database(
        pg_settings.model_copy(
            update={"DB_POOL_SIZE": 3, "DB_MAX_OVERFLOW": 1, "DB_STATEMENT_TIMEOUT_MS": 100}
        )
    )
    try:
        assert db.engine.pool.size() == 3  # type: ignore[attr-defined]
        assert db.engine.pool._max_overflow == 1  # type: ignore[attr-defined]
        with db.engine.connect() as connection:
            assert connection.scalar(text("SHOW statement_timeout")) == "100ms"
            with pytest.raises(OperationalError, match="statement timeout"):
                connection.execute(text("SELECT pg_sleep(1)"))
        # Migrations are exempt: a schema change on a large table may take longer.
        with db.engine.begin() as connection:
            migrate.serialise_startup(connection)
            assert connection.scalar(text("SHOW statement_timeout")) == "0"
    finally:
        db.dispose()
