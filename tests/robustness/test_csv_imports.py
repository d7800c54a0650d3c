"""CSV imports against a real server: bounded memory, the key and the cap checked before the
body is read, and at most JEWELRY_MAX_CONCURRENT_IMPORTS imports at once per process."""

import http.client
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ADMIN
from tests.robustness.support import new_store
from tests.servers import LOOPBACK, Server, running_server

IMPORT = "/api/v1/sales/import"
BOUNDARY = "csv-import-test-boundary"


def multipart(content: bytes) -> tuple[bytes, bytes]:
    """The head and tail of a multipart/form-data body whose `file` field holds `content`."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="sales.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


def upload_headers(key: dict[str, str], length: int | None = None) -> dict[str, str]:
    length_header = {} if length is None else {"Content-Length": str(length)}
    return {**key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **length_header}


def answer_before_the_body(server: Server, headers: dict[str, str]) -> http.client.HTTPResponse:
    """Send an import's headers, announcing a 10 MB body, and read the answer without sending
    a byte of that body: only a server that decides before reading the body answers."""
    connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=15)
    connection.putrequest("POST", IMPORT)
    for name, value in upload_headers(headers, 10_000_000).items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def imports_running(http_client: httpx.Client) -> float:
    samples = [
        float(line.rsplit(" ", 1)[1])
        for line in http_client.get("/metrics").text.splitlines()
        if line.startswith("jewelry_csv_imports_running")
    ]
    assert samples, "no jewelry_csv_imports_running in /metrics"
    return sum(samples)


def test_a_bad_key_is_answered_before_the_body_is_sent(sqlite_url: str, tmp_path: Path) -> None:
    # Before, the whole multipart body was read (and spooled) before the key was looked at.
    with running_server(sqlite_url, tmp_path) as server:
        refused = answer_before_the_body(server, {"X-API-Key": "not-a-key"})
    assert refused.status == 401


def test_imports_beyond_the_cap_are_429_until_a_slot_frees(sqlite_url: str, tmp_path: Path) -> None:
    env = {"JEWELRY_MAX_CONCURRENT_IMPORTS": "1"}
    with running_server(sqlite_url, tmp_path, env=env) as server, server.client() as client:
        _, key = new_store(client, "Slow uploader")
        head, tail = multipart(b"carats,price\n1.5,150.00\n")
        finish = threading.Event()
        outcome: dict[str, httpx.Response] = {}

        def slow_body() -> Iterator[bytes]:
            yield head + b"carats,price\n"
            finish.wait(timeout=60)
            yield b"1.5,150.00\n2,200.00\n" + tail

        def slow_upload() -> None:
            with server.client() as own:
                outcome["first"] = own.post(
                    IMPORT, content=slow_body(), headers=upload_headers(key)
                )

        first = threading.Thread(target=slow_upload)
        first.start()
        try:
            deadline = time.monotonic() + 30
            while imports_running(client) < 1:
                assert time.monotonic() < deadline, "the slow upload never took the slot"
                time.sleep(0.05)
            # Refused on its headers alone: the cap is checked before the body is read.
            busy = answer_before_the_body(server, key)
            assert busy.status == 429
            assert int(busy.getheader("Retry-After") or 0) >= 1
            full = client.post(
                IMPORT,
                content=head + b"carats,price\n3,300.00\n" + tail,
                headers=upload_headers(key),
            )
            assert full.status_code == 429
            assert "retry" in full.json()["detail"]
        finally:
            finish.set()
            first.join(timeout=60)
        assert outcome["first"].status_code == 201, outcome["first"].text
        assert outcome["first"].json() == {"count": 2}
        assert imports_running(client) == 0
        third = client.post(
            IMPORT, content=head + b"carats,price\n4,400.00\n" + tail, headers=upload_headers(key)
        )
        assert third.status_code == 201, third.text


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
        # Till times, to the millisecond, in local time: about 44 bytes a sale.
        block = "".join(
            f"{1 + n % 997 / 100:.2f},{30 + 50 * (1 + n % 997 / 100):.2f},"
            f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:{n % 59:02d}"
            f".{n % 1000:03d}+01:00,{store_id}\n"
            for n in range(10_000)
        ).encode()
        repeats = 50_000_000 // len(block)
        path = tmp_path / "big.csv"
        with path.open("wb") as out:
            out.write(header)
            for _ in range(repeats):
                out.write(block)
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


def test_an_upload_past_its_deadline_is_408_and_frees_its_slot(
    sqlite_url: str, tmp_path: Path
) -> None:
    """An upload that trickles in (each pause well within the body timeout) cannot hold an
    import slot for ever: the whole upload has a deadline."""
    env = {"JEWELRY_MAX_CONCURRENT_IMPORTS": "1", "JEWELRY_UPLOAD_TIMEOUT_SECONDS": "1"}
    with running_server(sqlite_url, tmp_path, env=env) as server, server.client() as client:
        _, key = new_store(client, "Trickler")
        head, tail = multipart(b"")

        def trickle() -> Iterator[bytes]:
            yield head + b"carats,price\n"
            for _ in range(8):
                time.sleep(0.3)
                yield b"1.5,150.00\n"
            yield tail

        late = client.post(IMPORT, content=trickle(), headers=upload_headers(key))
        assert late.status_code == 408, late.text
        assert "1 seconds" in late.json()["detail"]
        assert imports_running(client) == 0
        done = client.post(
            IMPORT, content=head + b"carats,price\n2,200\n" + tail, headers=upload_headers(key)
        )
        assert done.status_code == 201, done.text
