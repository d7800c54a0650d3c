"""What the robustness tests share: clients that retry the way a careful till would, listings,
direct database checks, and a TCP proxy that can cut the service off from PostgreSQL."""

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.helpers import ADMIN, all_items
from tests.servers import LOOPBACK

# Transport failures a client sees when the server dies or restarts under it.
TRANSPORT_ERRORS = (httpx.TransportError,)
# Words that betray a stack trace or an internal error leaking into a response body.
LEAKS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3", "Error:", "SELECT", "INSERT")


def new_store(http: httpx.Client, name: str) -> tuple[int, dict[str, str]]:
    response = http.post("/api/v1/stores", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], {"X-API-Key": body["api_key"]}


def add_batch(http: httpx.Client, headers: dict[str, str], records: list[dict[str, Any]]) -> None:
    response = http.post("/api/v1/sales/batch", json={"records": records}, headers=headers)
    assert response.status_code == 201, response.text


def list_sales(http: httpx.Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every sale the key may see, page by page."""
    return all_items(http, "/api/v1/sales", headers=headers, max_pages=200)


def assert_unavailable(response: httpx.Response, what: str) -> None:
    """A clean 503: Retry-After, a JSON detail that says what is wrong, no internals."""
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers.get("Retry-After", "").isdigit(), f"{what}: {response.headers}"
    body = response.json()
    assert set(body) == {"detail"}, f"{what}: {body}"
    assert "database" in body["detail"], f"{what}: {body}"
    assert_no_leak(response, what)


def assert_no_leak(response: httpx.Response, what: str) -> None:
    for word in LEAKS:
        assert word not in response.text, f"{what}: {word!r} in the body: {response.text}"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Outcome:
    """What happened to one idempotent write, over all its attempts."""

    key: str
    body: dict[str, Any]
    status: int | None = None
    response: dict[str, Any] | None = None
    replayed: bool = False
    attempts: int = 0
    unavailable: int = 0  # 503 answers (with Retry-After) that were retried
    transport_errors: int = 0
    unexpected: list[str] = field(default_factory=list)


def post_until_acknowledged(
    http: httpx.Client,
    path: str,
    headers: dict[str, str],
    key: str,
    body: dict[str, Any],
    *,
    deadline: float,
    retry_transport: bool = False,
    max_attempts: int = 200,
) -> Outcome:
    """POST with an Idempotency-Key until 201, retrying 503 (and, when asked, lost
    connections) with the same key and body; any other answer is recorded as unexpected."""
    outcome = Outcome(key, body)
    for _ in range(max_attempts):
        if time.monotonic() > deadline:
            outcome.unexpected.append("deadline passed without an acknowledgement")
            return outcome
        outcome.attempts += 1
        try:
            response = http.post(path, json=body, headers={**headers, "Idempotency-Key": key})
        except TRANSPORT_ERRORS as exc:
            if not retry_transport:
                outcome.unexpected.append(f"transport error {exc!r}")
                return outcome
            outcome.transport_errors += 1
            time.sleep(0.05)
            continue
        if response.status_code == 503 and response.headers.get("Retry-After", "").isdigit():
            outcome.unavailable += 1
            assert_no_leak(response, f"503 for {key}")
            # Honour Retry-After, but keep the test short: its value is 1 second or so.
            time.sleep(min(float(response.headers["Retry-After"]), 1.0) / 4)
            continue
        if response.status_code == 201:
            outcome.status = 201
            outcome.response = response.json()
            outcome.replayed = response.headers.get("Idempotent-Replayed") == "true"
            return outcome
        outcome.unexpected.append(f"{response.status_code} {response.text[:300]}")
        return outcome
    outcome.unexpected.append(f"no acknowledgement after {max_attempts} attempts")
    return outcome


# Direct database access, for checks that must not trust the service.


def count_rows(database_url: str, table: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def sqlite_integrity(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check")]
    finally:
        engine.dispose()


def via_port(database_url: str, port: int) -> str:
    """The same PostgreSQL URL, through another loopback port."""
    return (
        make_url(database_url).set(host=LOOPBACK, port=port).render_as_string(hide_password=False)
    )


class TcpProxy:
    """A loopback TCP relay to an upstream address that can be cut (listener and every
    relayed connection closed, so new connections are refused) and restored on the same port.
    Threads only; every loop ends when the proxy is cut or closed."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind((LOOPBACK, 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._open = threading.Event()
        self.connections = 0

    def __enter__(self) -> "TcpProxy":
        self.restore()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._open.set()
        self._spawn(self._accept, listener)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            doomed = list(self._sockets)
            self._sockets.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if not self._open.is_set():
                return False
            self._sockets.add(sock)
            return True

    def _accept(self, listener: socket.socket) -> None:
        while self._open.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            if not (self._track(client) and self._track(server)):
                client.close()
                server.close()
                return
            self.connections += 1
            self._spawn(self._pump, client, server)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while self._open.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def threads_joined(threads: list[threading.Thread], timeout: float) -> Iterator[None]:
    """Start the threads, run the block, then join them all within `timeout` seconds."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {timeout} s: {stuck}"


def dump(value: Any) -> str:
    return json.dumps(value, default=str)[:2000]
