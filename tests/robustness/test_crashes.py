"""The server dies (SIGKILL), is asked to stop (SIGTERM), or loses its database, under load."""

import contextlib
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.helpers import ADMIN
from tests.robustness.support import (
    Outcome,
    TcpProxy,
    add_batch,
    assert_no_leak,
    assert_unavailable,
    count_rows,
    list_sales,
    new_store,
    post_until_acknowledged,
    sqlite_integrity,
    threads_joined,
    via_port,
)
from tests.servers import Server

SEED = 20261126
# Each round costs a server start (a few seconds of imports).
KILL_ROUNDS = {"sqlite": 10, "postgresql": 10}
STREAMS = 3
LEASE_SECONDS = 3


def training_refused(server: Server, store_id: int) -> bool:
    """Whether a training is running now: another one is refused with 409 (bounded wait)."""
    with server.client(timeout=60) as http:
        for _ in range(50):
            time.sleep(0.2)
            answer = http.post("/api/v1/train", json={"store_ids": [store_id]}, headers=ADMIN)
            assert answer.status_code in (201, 409), answer.text
            if answer.status_code == 409:
                return True
    return False


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Server] = []

    def make(database_url: str, **kwargs: Any) -> Server:
        server = Server(database_url, tmp_path, **kwargs)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()


def crash_body(n: int) -> dict[str, Any]:
    return {"carats": round(0.5 + n / 1000, 3), "price": f"{200 + n}.{n * 13 % 100:02d}"}


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    database_url: str, server_factory: Any
) -> None:
    """Tills stream sales with Idempotency-Keys while the whole server (every process) is
    killed with SIGKILL at seeded random moments and restarted; they retry what was not
    acknowledged with the same key. Every acknowledged sale is stored exactly once and
    nothing is stored that was not sent. The last kill lands in the middle of a training run,
    whose lock must not outlive it for longer than the lease."""
    rng = random.Random(SEED)
    rounds = KILL_ROUNDS[make_url(database_url).get_backend_name()]
    env = {"JEWELRY_TRAINING_LEASE_SECONDS": str(LEASE_SECONDS)}
    server: Server = server_factory(database_url, workers=1, graceful_timeout=5, env=env)
    server.start()
    with server.client() as http:
        _, store = new_store(http, "Crash-prone tills")
        training_store, training_key = new_store(http, "Training data")
        add_batch(
            http,
            training_key,
            [{"carats": 1 + n % 20, "price": 30 + 50 * (1 + n % 20) + n % 7} for n in range(4000)],
        )
    slow_training = {"method": "sgd", "epochs": 100, "store_ids": [training_store]}

    stop = threading.Event()
    acknowledged: dict[int, Outcome] = {}
    progress = [0] * STREAMS
    deadline = time.monotonic() + 150

    def till(stream: int) -> None:
        with server.client(timeout=10) as http:
            for i in range(100_000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                n = stream + STREAMS * i
                acknowledged[n] = post_until_acknowledged(
                    http,
                    "/api/v1/sales",
                    store,
                    f"crash-{n}",
                    crash_body(n),
                    deadline=deadline,
                    retry_transport=True,
                    max_attempts=2_000,
                )
                progress[stream] += 1

    def wait_for_sales(each: int) -> None:
        seen = list(progress)
        wait_until = time.monotonic() + 30
        while min(p - s for p, s in zip(progress, seen, strict=True)) < each:
            assert time.monotonic() < wait_until, "the tills made no progress"
            time.sleep(0.01)

    def doomed_training() -> None:
        # Retries while a probe (below) holds the lock; ends when the kill cuts it off.
        with server.client(timeout=60) as http, contextlib.suppress(httpx.TransportError):
            for _ in range(200):
                answer = http.post("/api/v1/train", json=slow_training, headers=ADMIN)
                if answer.status_code != 409:
                    return
                time.sleep(0.05)

    tills = [threading.Thread(target=till, args=(s,), name=f"till-{s}") for s in range(STREAMS)]
    doomed = threading.Thread(target=doomed_training)
    with threads_joined(tills, timeout=170):
        try:
            for round_ in range(rounds):
                # Let some sales through on every stream, then kill at a random moment.
                wait_for_sales(2)
                if round_ == rounds - 1:
                    doomed.start()
                    assert training_refused(server, training_store), "no training was running"
                time.sleep(rng.uniform(0.0, 0.25))
                server.kill()
                time.sleep(rng.uniform(0.0, 0.1))
                server.start()
            wait_for_sales(1)  # one more sale per stream after the last restart
        finally:
            stop.set()
    if doomed.ident is not None:
        doomed.join(timeout=60)
        assert not doomed.is_alive()

    # The killed run's lock goes with it: at once on PostgreSQL (the advisory lock dies with
    # its connection), when its lease expires on SQLite. Until then 409 with Retry-After.
    began = time.monotonic()
    refusals = 0
    with server.client(timeout=60) as http:
        for _ in range(200):
            answer = http.post("/api/v1/train", json={"store_ids": [training_store]}, headers=ADMIN)
            if answer.status_code != 409:
                break
            assert answer.headers.get("Retry-After", "").isdigit(), answer.headers
            refusals += 1
            assert time.monotonic() - began < LEASE_SECONDS + 30, "the lock outlived its lease"
            time.sleep(0.25)
    assert answer.status_code == 201, answer.text
    print(f"\ntraining refused {refusals} times after the killed run")

    outcomes = list(acknowledged.values())
    problems = {o.key: o.unexpected for o in outcomes if o.unexpected}
    assert not problems, problems
    replays = [o for o in outcomes if o.replayed]
    lost = sum(o.transport_errors for o in outcomes)
    print(
        f"\n{server.starts} starts, {len(outcomes)} sales acknowledged; {lost} requests "
        f"failed in transport (killed or refused); {len(replays)} retries were answered from "
        f"the idempotency record (committed before the kill, unacknowledged)"
    )

    with server.client() as http:
        stored = list_sales(http, store)
    by_id = Counter(sale["id"] for sale in stored)
    assert [i for i, times in by_id.items() if times > 1] == []
    sent = {(crash_body(n)["carats"], crash_body(n)["price"]): n for n in acknowledged}
    strays = [s for s in stored if (s["carats"], s["price"]) not in sent]
    assert strays == [], f"stored but never sent: {strays[:5]}"
    values = Counter((s["carats"], s["price"]) for s in stored)
    assert [v for v, times in values.items() if times > 1] == [], "a sale was stored twice"
    stored_ids = {(s["carats"], s["price"]): s["id"] for s in stored}
    for n, outcome in acknowledged.items():
        assert outcome.response is not None
        body = crash_body(n)
        assert stored_ids.get((body["carats"], body["price"])) == outcome.response["id"], (
            f"crash-{n} was acknowledged as sale {outcome.response['id']} but is not stored so"
        )
    assert len(stored) == len(acknowledged)

    server.stop()
    if make_url(database_url).get_backend_name() == "sqlite":
        assert sqlite_integrity(database_url) == ["ok"]
    assert count_rows(database_url, "idempotency_keys") == len(acknowledged)


BATCHES = 3
BATCH_RECORDS = 10_000


def test_sigterm_lets_requests_in_flight_finish(database_url: str, server_factory: Any) -> None:
    """SIGTERM while several large batch inserts run: each completes with 201, all their
    rows are stored, and the server exits within its graceful timeout."""
    graceful = 20
    server: Server = server_factory(database_url, workers=2, graceful_timeout=graceful)
    server.start()
    with server.client() as http:
        stores = [new_store(http, f"Batch {b}")[1] for b in range(BATCHES)]

    uploaded = [threading.Event() for _ in range(BATCHES)]
    # Each upload holds back its last chunk until SIGTERM has been sent, so every batch is in
    # flight then however fast the server is.
    signalled_event = threading.Event()
    answers: list[tuple[int, httpx.Response | BaseException, float]] = []

    def upload(b: int) -> None:
        records = [
            {"carats": round(1 + i / 10_000, 4), "price": f"{40 + b + i / 100:.2f}"}
            for i in range(BATCH_RECORDS)
        ]
        payload = httpx.Request("POST", "/", json={"records": records}).read()

        def body() -> Iterator[bytes]:
            last = len(payload) - 1024
            for start in range(0, last, 65536):
                yield payload[start : min(start + 65536, last)]
            uploaded[b].set()
            signalled_event.wait(timeout=60)
            yield payload[last:]

        headers = {**stores[b], "Content-Type": "application/json"}
        with server.client(timeout=120) as http:
            try:
                response = http.post("/api/v1/sales/batch", content=body(), headers=headers)
            except httpx.TransportError as exc:
                answers.append((b, exc, time.monotonic()))
                return
        answers.append((b, response, time.monotonic()))

    uploads = [threading.Thread(target=upload, args=(b,)) for b in range(BATCHES)]
    with threads_joined(uploads, timeout=150):
        for event in uploaded:
            assert event.wait(timeout=60), "an upload did not finish sending"
        time.sleep(0.1)  # for the server to read the headers and the chunks already sent
        server.terminate()
        signalled = time.monotonic()
        signalled_event.set()
        status = server.wait(timeout=graceful + 15)
        exited = time.monotonic()

    print(f"\nexited {exited - signalled:.1f} s after SIGTERM with status {status}")
    assert len(answers) == BATCHES
    for b, answer, finished in answers:
        assert isinstance(answer, httpx.Response), f"batch {b}: {answer!r}"
        assert answer.status_code == 201, f"batch {b}: {answer.status_code} {answer.text[:300]}"
        assert answer.json()["count"] == BATCH_RECORDS
        assert finished > signalled, f"batch {b} had finished before SIGTERM: not in flight"
    assert status == 0, server.log_tail()
    assert exited - signalled < graceful + 5
    assert server.log().count("Application shutdown complete.") == 2
    assert count_rows(database_url, "sales") == BATCHES * BATCH_RECORDS


def test_database_unavailable_then_back(
    database_url: str, server_factory: Any, tmp_path: Path
) -> None:
    if make_url(database_url).get_backend_name() == "sqlite":
        sqlite_read_only_then_back(database_url, server_factory, tmp_path)
    else:
        postgres_cut_off_then_back(database_url, server_factory)


def postgres_cut_off_then_back(database_url: str, server_factory: Any) -> None:
    """The service reaches PostgreSQL through a proxy that the test cuts (listener and every
    connection closed, some in the middle of a transaction) and restores: requests that need
    the database answer a clean 503, liveness stays 200, readiness is 503; then the same
    server recovers without a restart, and tills that kept retrying lose and double nothing."""
    url = make_url(database_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        server: Server = server_factory(via_port(database_url, proxy.port), workers=1)
        server.start()
        with server.client(timeout=30) as http:
            _, store = new_store(http, "Cut off")
            add_batch(http, store, [{"carats": c, "price": 30 + 50 * c} for c in range(1, 11)])
            assert http.post("/api/v1/train", json={}, headers=ADMIN).status_code == 201
            assert http.get("/api/v1/predict", params={"carats": 3}).status_code == 200

        # Tills keep selling through the outage, retrying 503s with the same key.
        stop = threading.Event()
        outcomes: dict[int, Outcome] = {}
        deadline = time.monotonic() + 60

        def till(stream: int) -> None:
            with server.client(timeout=30) as http:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    n = stream + STREAMS * i
                    key, body = f"outage-{n}", crash_body(n)
                    outcomes[n] = post_until_acknowledged(
                        http, "/api/v1/sales", store, key, body, deadline=deadline
                    )

        tills = [threading.Thread(target=till, args=(s,)) for s in range(STREAMS)]
        with threads_joined(tills, timeout=90), server.client(timeout=30) as http:
            try:
                time.sleep(0.3)
                proxy.cut()
                for attempt in range(3):
                    for method, path, body in (
                        ("POST", "/api/v1/sales", {"carats": 1.5, "price": "99.99"}),
                        ("GET", "/api/v1/sales", None),
                        ("GET", "/api/v1/models", None),
                        ("POST", "/api/v1/stores", {"name": f"New {attempt}"}),
                        ("POST", "/api/v1/train", {}),
                    ):
                        headers = ADMIN if path in ("/api/v1/stores", "/api/v1/train") else store
                        response = http.request(method, path, headers=headers, json=body)
                        assert_unavailable(response, f"{method} {path}: the database is down")
                    assert http.get("/health/live").status_code == 200
                    ready = http.get("/health/ready")
                    assert ready.status_code == 503, ready.text
                    assert ready.headers.get("Retry-After", "").isdigit()
                    assert_no_leak(ready, "ready")
                    # The cached model may answer, or its refresh finds no database: no 500.
                    quote = http.get("/api/v1/predict", params={"carats": 3})
                    if quote.status_code != 200:
                        assert_unavailable(quote, "predict while the database is down")
                    time.sleep(0.4)
                proxy.restore()
                recovered = post_until_acknowledged(
                    http,
                    "/api/v1/sales",
                    store,
                    "after-the-outage",
                    {"carats": 1.5, "price": "99.99"},
                    deadline=time.monotonic() + 15,
                )
                assert recovered.status == 201, recovered.unexpected
                time.sleep(0.3)
            finally:
                stop.set()

        problems = {o.key: o.unexpected for o in outcomes.values() if o.unexpected}
        assert not problems, problems
        unavailable = sum(o.unavailable for o in outcomes.values())
        print(f"\n{len(outcomes)} sales through the outage; {unavailable} answers were 503")
        assert unavailable > 0, "the tills never saw the outage"
        with server.client(timeout=30) as http:
            assert http.get("/health/ready").status_code == 200
            stored = list_sales(http, store)
            assert http.post("/api/v1/train", json={}, headers=ADMIN).status_code == 201
        ids = Counter(sale["id"] for sale in stored)
        assert [i for i, times in ids.items() if times > 1] == []
        acknowledged = {o.response["id"] for o in outcomes.values() if o.response}
        assert len(acknowledged) == len(outcomes)
        assert acknowledged <= set(ids)
        assert len(stored) == 10 + len(outcomes) + 1
        assert "Traceback" not in server.log(), server.log_tail()


def _chattr(flag: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chattr", flag, *map(str, files)], capture_output=True, text=True, timeout=30
    )


def _immutable_works(directory: Path) -> bool:
    probe = directory / "immutable-probe"
    probe.write_text("x")
    try:
        if shutil.which("chattr") is None or _chattr("+i", [probe]).returncode != 0:
            return False
        try:
            with probe.open("a") as file:
                file.write("y")
        except PermissionError:
            return True
        return False
    finally:
        _chattr("-i", [probe])
        probe.unlink()


def sqlite_read_only_then_back(database_url: str, server_factory: Any, tmp_path: Path) -> None:
    """The database file and its WAL become immutable (the tests run as root, so chmod would
    not stop the server's writes): writes answer 503, reads go on; write access comes back
    and writes succeed again without a restart."""
    url = make_url(database_url)
    if not _immutable_works(tmp_path):
        pytest.skip("chattr +i is not supported here (needs CAP_LINUX_IMMUTABLE and ext4/xfs)")
    database = Path(url.database or "")
    server: Server = server_factory(database_url, workers=1)
    server.start()
    files = [database, Path(f"{database}-wal")]
    try:
        with server.client(timeout=30) as http:
            _, store = new_store(http, "Read only")
            add_batch(http, store, [{"carats": c, "price": 30 + 50 * c} for c in range(1, 11)])
            assert http.post("/api/v1/train", json={}, headers=ADMIN).status_code == 201
            assert all(f.exists() for f in files), list(database.parent.iterdir())

            # Leave the -shm alone: SQLite maps it, and an immutable mapping faults (SIGBUS).
            frozen = _chattr("+i", files)
            assert frozen.returncode == 0, frozen.stderr

            def write(i: int) -> httpx.Response:
                with server.client(timeout=30) as writer:
                    return writer.post(
                        "/api/v1/sales",
                        json={"carats": 2.5, "price": f"1{i}.00"},
                        headers={**store, "Idempotency-Key": f"frozen-{i}"},
                    )

            # Concurrent writes, so that the pools open new connections while read-only.
            results: list[httpx.Response] = []
            writers = [
                threading.Thread(target=lambda i=i: results.append(write(i))) for i in range(8)
            ]
            with threads_joined(writers, timeout=60):
                pass
            results.append(http.post("/api/v1/train", json={}, headers=ADMIN))
            for response in results:
                assert_unavailable(response, "a write to a read-only database")
            for _ in range(4):
                listed = http.get("/api/v1/sales", headers=store)
                assert listed.status_code == 200, listed.text
                assert len(listed.json()["items"]) == 10
                assert http.get("/api/v1/models").status_code == 200
                assert http.get("/api/v1/predict", params={"carats": 2}).status_code == 200
                assert http.get("/health/live").status_code == 200

            thawed = _chattr("-i", files)
            assert thawed.returncode == 0, thawed.stderr
            # The writes refused while frozen, retried as their 503 asked (same key): each
            # one is stored.
            retried: list[Outcome] = []

            def retry(i: int) -> None:
                with server.client(timeout=30) as writer:
                    body = {"carats": 2.5, "price": f"1{i}.00"}
                    retried.append(
                        post_until_acknowledged(
                            writer,
                            "/api/v1/sales",
                            store,
                            f"frozen-{i}",
                            body,
                            deadline=time.monotonic() + 20,
                        )
                    )

            writers = [threading.Thread(target=retry, args=(i,)) for i in range(8)]
            with threads_joined(writers, timeout=60):
                pass
            assert {o.key: o.unexpected for o in retried if o.unexpected} == {}
            print(f"\n{sum(o.unavailable for o in retried)} 503s while recovering")
            # Recovered: from now on every write succeeds the first time, whichever pooled
            # connection serves it (one opened while the file was read-only too).
            after: list[httpx.Response] = []
            writers = [
                threading.Thread(target=lambda i=i: after.append(write(i))) for i in range(8, 16)
            ]
            with threads_joined(writers, timeout=60):
                pass
            after += [write(i) for i in range(16, 32)]
            statuses = Counter(r.status_code for r in after)
            assert statuses == {201: 24}, [r.text for r in after if r.status_code != 201]
            assert len(list_sales(http, store)) == 10 + 8 + 24
            assert http.post("/api/v1/train", json={}, headers=ADMIN).status_code == 201
    finally:
        _chattr("-i", files)
    server.stop()
    assert sqlite_integrity(database_url) == ["ok"]
