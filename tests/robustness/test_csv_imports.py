"""CSV imports against a real server: bounded memory."""

import shutil
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import ADMIN
from tests.robustness.support import new_store
from tests.servers import running_server

IMPORT = "/api/v1/sales/import"


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    # The parsing whose memory is measured does not depend on the backend; SQLite is the
    # default, and the faster one to fill with a million rows.
    path = tmp_path / "jewelry.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def memory(pid: int, field: str) -> int:
    """A /proc/PID/status figure (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_50_mb_import_grows_the_worker_by_less_than_the_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    # Before: a 60 MB file raised the worker by about 1 GB.
    with running_server(sqlite_url, tmp_path) as server, server.client(timeout=600) as client:
        store_id, _ = new_store(client, "Big file")
        header = b"carats,price,sold_at,store_id\n"
        block = "".join(
            f"{1 + n % 997 / 100:.2f},{30 + 50 * (1 + n % 997 / 100):.2f},"
            f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z,{store_id}\n"
            for n in range(10_000)
        ).encode()
        repeats = 50_000_000 // len(block)
        path = tmp_path / "big.csv"
        with path.open("wb") as file:
            file.write(header)
            for _ in range(repeats):
                file.write(block)
        size = path.stat().st_size

        # Warm up (imports, caches, the thread pool), then measure from here: with one worker
        # the server process is the worker, and clear_refs resets its peak to its current size.
        first_line = block[: block.index(b"\n") + 1]
        warm = client.post(IMPORT, files={"file": ("w.csv", header + first_line)}, headers=ADMIN)
        assert warm.status_code == 201, warm.text
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        before = memory(server.pid, "VmRSS")

        # The event loop stays free while the file is read and stored in a thread.
        stop = threading.Event()
        health: list[int] = []

        def probe() -> None:
            with server.client(timeout=10) as own:
                while not stop.wait(0.5):
                    health.append(own.get("/health/live").status_code)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            with path.open("rb") as file:
                response = client.post(
                    IMPORT, files={"file": ("big.csv", file, "text/csv")}, headers=ADMIN
                )
        finally:
            stop.set()
            prober.join(timeout=30)
        assert response.status_code == 201, response.text[:2000]
        assert response.json() == {"count": repeats * 10_000}
        growth = memory(server.pid, "VmHWM") - before
        print(f"\n{size / 1e6:.1f} MB file: the worker's peak grew by {growth / 1e6:.1f} MB")
        assert growth < size
        assert health and set(health) == {200}
