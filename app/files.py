"""The service's files on disk: the data directory, the admin key and the SQLite database.

They hold the only copy of an admin key and every store's sales, so only the user the service
runs as may read them: directories 0700, files 0600, whatever the umask.
"""

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite creates its WAL and shared-memory files with the database file's own mode, so a
# private database file keeps them private too; ones left from before are tightened with it.
SQLITE_FILES = ("", "-wal", "-shm")


def ensure_data_dir(path: Path) -> None:
    """Create the data directory private, or tighten one of ours that others can read.

    Exits with one line naming the directory and the uid that must be able to write it when
    this process cannot: a root-owned bind mount in a container is the usual cause, and a
    traceback would hide that behind the first file SQLite failed to open.
    """
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        info = path.stat()
        ours = info.st_uid == os.geteuid()
        # A sticky directory (/tmp) is shared by design: never take it from the others.
        if ours and info.st_mode & 0o077 and not info.st_mode & stat.S_ISVTX:
            path.chmod(PRIVATE_DIR)
        writable = os.access(path, os.W_OK | os.X_OK, effective_ids=True)
    except OSError as error:
        raise SystemExit(_unwritable(path, f" ({error.strerror})")) from None
    if not writable:
        raise SystemExit(_unwritable(path))


def _unwritable(path: Path, reason: str = "") -> str:
    return (
        f"jewelry-forecast: the data directory {path} must be writable by uid {os.geteuid()}"
        f"{reason}: give it to that user, or set JEWELRY_DATA_DIR to another directory"
    )


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a file that only its owner can read, from the first byte on.

    ``O_CREAT``'s mode applies only to a new file, so an existing one (say, written 0644 by an
    older version) is tightened before the new secret goes in.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(descriptor, PRIVATE_FILE)
        file.write(text)


def create_sqlite_file(path: Path) -> None:
    """Create the SQLite database file 0600 (and missing directories 0700) before SQLite
    opens it, which would otherwise create it, and its -wal and -shm, with the umask's mode."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        for suffix in SQLITE_FILES:
            _tighten(path.with_name(path.name + suffix))


def _tighten(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        path.chmod(PRIVATE_FILE)
