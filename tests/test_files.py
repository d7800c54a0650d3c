"""Files on disk: the data directory is 0700; the admin key, the SQLite database and its WAL
and shared-memory files are 0600, with the usual umask and after rewrites; a data directory
the service cannot write stops a command with one line that says what to fix."""

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.files import ensure_data_dir

CLI = str(Path(sys.executable).parent / "jewelry-forecast")
NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """022, under which files are created readable by everyone unless the code says not."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def run(data_dir: Path, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEWELRY_")}
    env["JEWELRY_DATA_DIR"] = str(data_dir)
    command = [CLI, *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_demo_and_rotate_admin_key_keep_the_data_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    demo = run(data, "demo")
    assert demo.returncode == 0, demo.stderr
    key = data / "admin-key"
    assert (mode(data), mode(key), mode(data / "jewelry.db")) == (0o700, 0o600, 0o600)

    # As an older version (or a careless operator) may have left them.
    data.chmod(0o755)
    key.chmod(0o644)
    old_key = key.read_text()
    rotated = run(data, "rotate-admin-key")
    assert rotated.returncode == 0, rotated.stderr
    assert key.read_text() != old_key
    assert (mode(data), mode(key)) == (0o700, 0o600)


def test_the_sqlite_database_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    db = Database(Settings(DATA_DIR=tmp_path / "data"))
    try:
        with db.session(write=True) as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
            session.execute(text("INSERT INTO t VALUES (1)"))
        # The pooled connection keeps the WAL and shared-memory files in place.
        files = [tmp_path / "data" / f"jewelry.db{suffix}" for suffix in ("", "-wal", "-shm")]
        assert [mode(path) for path in files] == [0o600] * 3
    finally:
        db.dispose()


def test_an_existing_database_that_others_could_read_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "jewelry.db"
    older = sqlite3.connect(path)  # as a version before this one, or another tool, made it
    try:
        older.execute("PRAGMA journal_mode = WAL")
        older.execute("CREATE TABLE t (x INTEGER)")
        older.commit()
        files = [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")]
        assert [mode(file) for file in files] == [0o644] * 3

        db = Database(Settings(DATABASE_URL=f"sqlite:///{path}"))
        with db.engine.connect():
            assert [mode(file) for file in files] == [0o600] * 3
        db.dispose()
    finally:
        older.close()


def test_a_shared_sticky_directory_is_not_taken_from_the_others(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is, were JEWELRY_DATA_DIR pointed there
    ensure_data_dir(shared)
    assert mode(shared) == 0o1777


@pytest.fixture
def root_owned_data_dir() -> Iterator[Path]:
    """A data directory as a root-owned bind mount gives it: others may enter, not write."""
    top = Path(tempfile.mkdtemp(prefix="jewelry-unwritable-"))
    try:
        top.chmod(0o755)
        data = top / "data"
        data.mkdir(mode=0o755)
        yield data
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("command", ["serve", "migrate", "demo", "rotate-admin-key"])
def test_a_data_dir_the_user_cannot_write_is_one_line_naming_it_and_the_uid(
    root_owned_data_dir: Path, command: str
) -> None:
    result = run(root_owned_data_dir, command, user=NOBODY)
    assert result.returncode == 1
    assert result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line, result.stderr
    assert str(root_owned_data_dir) in line
    assert f"uid {NOBODY}" in line
    assert mode(root_owned_data_dir) == 0o755
    assert list(root_owned_data_dir.iterdir()) == []
