"""A first deployment: several workers start at once on a database that has no schema yet."""

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import make_engine
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


def test_a_new_sqlite_file_goes_to_wal_mode_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    """A file not yet in WAL mode refuses the switch at once, busy timeout or not, while
    another connection holds a write: the worker that opens it second must wait for it, as
    for any lock, not fail to start."""
    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    releasing = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    releasing.start()
    engine = make_engine(Settings(DATABASE_URL=f"sqlite:///{path}", ADMIN_API_KEY=ADMIN_KEY))
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        releasing.join()
        engine.dispose()
        writer.close()
