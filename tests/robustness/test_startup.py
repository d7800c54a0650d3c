"""A first deployment: several workers start at once on a database that has no schema yet."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.helpers import ADMIN_KEY
from tests.robustness.support import count_rows

SCHEMA = "robustness_fresh"


@pytest.fixture
def unmigrated_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same backend with no tables at all."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    # A schema of its own: the shared test database keeps its tables.
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    try:
        fresh = url.update_query_dict({"options": f"-csearch_path={SCHEMA}"})
        yield fresh.render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        engine.dispose()


# What a uvicorn worker does when it starts: build the app, run its lifespan (migrations
# and the admin key). Each process imports first, then waits for the word to go.
WORKER = """
import sys
from fastapi.testclient import TestClient
from app.main import create_app
app = create_app()
print("imported", flush=True)
sys.stdin.readline()
with TestClient(app):
    pass
print("started", flush=True)
"""
WORKERS = 2


def test_workers_starting_together_on_an_empty_database_all_start(
    unmigrated_url: str, tmp_path: Path
) -> None:
    """`serve --workers N` on a new database: every worker migrates on start, at the same
    moment. None may fail, or uvicorn's supervisor stops the whole service a few seconds after
    the others answered ready (seen with --workers 2 on both backends)."""
    env = {
        **os.environ,
        "JEWELRY_DATABASE_URL": unmigrated_url,
        "JEWELRY_DATA_DIR": str(tmp_path),
        "JEWELRY_ADMIN_API_KEY": ADMIN_KEY,
        "JEWELRY_LOG_LEVEL": "WARNING",
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()  # bounded: the process exits or prints
            assert line == "imported\n", worker.communicate(timeout=30)
        for worker in workers:  # go: all at once
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    failures = [
        err[-3000:] for worker, (_, err) in zip(workers, results, strict=True) if worker.returncode
    ]
    assert failures == [], "\n\n".join(failures)
    assert [out for out, _ in results] == ["started\n"] * WORKERS
    assert count_rows(unmigrated_url, "stores") == 0
    assert count_rows(unmigrated_url, "alembic_version") == 1
