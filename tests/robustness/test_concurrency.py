"""Many clients at once against a real server with two worker processes, per backend.

One server (and one fresh database) serves every test of this module on a backend; each test
works with its own stores, so the tests do not depend on each other or on their order.
"""

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, fresh_database
from tests.helpers import ADMIN
from tests.robustness.support import (
    Outcome,
    add_batch,
    assert_no_leak,
    list_sales,
    new_store,
    parse_time,
    post_until_acknowledged,
    threads_joined,
)
from tests.servers import Server, running_server

CLIENTS = 16
SALES_PER_CLIENT = 66  # 1,056 sales in all
TRAINERS = 4


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp(f"concurrency-{request.param}")
    url = fresh_database(request, request.param, data_dir)
    with running_server(url, data_dir, workers=2, graceful_timeout=5) as running:
        yield running


def sale_body(n: int) -> dict[str, Any]:
    # Unique carats and price per sale, so every stored row can be traced to what was sent.
    return {"carats": round(1 + n / 1000, 3), "price": f"{100 + n}.{n * 7 % 100:02d}"}


def test_concurrent_idempotent_sales_are_stored_exactly_once(server: Server) -> None:
    with server.client() as http:
        _, store = new_store(http, "Concurrent tills")
    deadline = time.monotonic() + 120
    first: dict[int, Outcome] = {}
    replays: dict[int, Outcome] = {}
    start = threading.Barrier(CLIENTS, timeout=30)

    def till(client: int, numbers: list[int], into: dict[int, Outcome]) -> None:
        with server.client(timeout=30) as http:
            start.wait()
            for n in numbers:
                into[n] = post_until_acknowledged(
                    http, "/api/v1/sales", store, f"till-{n}", sale_body(n), deadline=deadline
                )

    everything = list(range(CLIENTS * SALES_PER_CLIENT))
    shares = [everything[c::CLIENTS] for c in range(CLIENTS)]
    sending = [threading.Thread(target=till, args=(c, shares[c], first)) for c in range(CLIENTS)]
    with threads_joined(sending, timeout=150):
        pass

    # Replay a third of them, from every client at once: same key, same body.
    again = [n for n in everything if n % 3 == 0]
    start.reset()
    shares = [again[c::CLIENTS] for c in range(CLIENTS)]
    replaying = [
        threading.Thread(target=till, args=(c, shares[c], replays)) for c in range(CLIENTS)
    ]
    with threads_joined(replaying, timeout=150):
        pass

    unavailable = sum(o.unavailable for o in [*first.values(), *replays.values()])
    print(f"\n{len(first)} sales and {len(replays)} replays: {unavailable} answers were 503")
    problems = {o.key: o.unexpected for o in [*first.values(), *replays.values()] if o.unexpected}
    assert not problems, problems
    assert len(first) == len(everything)

    acknowledged = {n: o.response for n, o in first.items() if o.status == 201}
    assert len(acknowledged) == len(everything)
    for n, outcome in replays.items():
        assert outcome.replayed, f"till-{n} was stored again instead of replayed"
        assert outcome.response == acknowledged[n], f"till-{n} replayed a different answer"

    with server.client() as http:
        stored = list_sales(http, store)
    ids = Counter(sale["id"] for sale in stored)
    assert [i for i, times in ids.items() if times > 1] == []
    assert set(ids) == {body["id"] for body in acknowledged.values()}
    assert len(stored) == len(acknowledged)
    by_id = {sale["id"]: sale for sale in stored}
    for n, body in acknowledged.items():
        row = by_id[body["id"]]
        assert (row["carats"], row["price"]) == (sale_body(n)["carats"], sale_body(n)["price"])


def test_one_training_runs_at_a_time(server: Server) -> None:
    with server.client() as http:
        store_id, store = new_store(http, "Training data")
        # About a second of stochastic descent on 4,000 sales.
        records = [
            {
                "carats": 0.5 + (n % 250) / 10,
                "price": f"{30 + 2 * n % 97 + 50 * (0.5 + (n % 250) / 10):.2f}",
            }
            for n in range(4000)
        ]
        add_batch(http, store, records)
        before = {m["version"] for m in http.get("/api/v1/models").json()["items"]}
    body = {"method": "sgd", "epochs": 8, "random_seed": 1, "store_ids": [store_id]}
    answers: list[httpx.Response] = []
    start = threading.Barrier(TRAINERS, timeout=30)

    def trainer() -> None:
        with server.client(timeout=120) as http:
            start.wait()
            answers.append(http.post("/api/v1/train", json=body, headers=ADMIN))

    with threads_joined([threading.Thread(target=trainer) for _ in range(TRAINERS)], timeout=150):
        pass

    statuses = sorted(r.status_code for r in answers)
    print(f"\nconcurrent trainings answered {statuses}")
    for response in answers:
        assert response.status_code in (201, 409), response.text
        assert_no_leak(response, "train")
        if response.status_code == 409:
            assert response.headers.get("Retry-After", "").isdigit(), response.headers
    assert 201 in statuses

    # The lock is free again once the run is over.
    with server.client(timeout=120) as http:
        after = http.post("/api/v1/train", json=body, headers=ADMIN)
        assert after.status_code == 201, after.text
        versions = http.get("/api/v1/models").json()["items"]
    new = [v for v in versions if v["version"] not in before]
    assert len(new) == statuses.count(201) + 1
    windows = sorted(
        (
            parse_time(v["trained_at"]).timestamp() - v["training_seconds"],
            parse_time(v["trained_at"]).timestamp(),
            v["version"],
        )
        for v in versions
    )
    for (_, end, earlier), (begin, _, later) in itertools.pairwise(windows):
        assert begin >= end, (
            f"versions {earlier} and {later} were trained at the same time: {windows}"
        )


def test_every_worker_serves_the_new_version_soon_after_an_activation(server: Server) -> None:
    with server.client(timeout=60) as http:
        versions = []
        for name, silver, gold in (("Old prices", 30, 50), ("New prices", 10, 20)):
            store_id, store = new_store(http, name)
            add_batch(
                http, store, [{"carats": c, "price": silver + gold * c} for c in range(1, 21)]
            )
            trained = http.post("/api/v1/train", json={"store_ids": [store_id]}, headers=ADMIN)
            assert trained.status_code == 201, trained.text
            versions.append(trained.json()["version"])
    old, new = versions[1], versions[0]  # the last trained is active; roll back to the first

    # A new connection per request (Connection: close), so that requests reach both workers.
    def quote(http: httpx.Client) -> httpx.Response:
        return http.get("/api/v1/predict", params={"carats": 2}, headers={"Connection": "close"})

    # Both workers serve `old` before the activation (each re-reads the pointer within 1 s).
    in_a_row, deadline = 0, time.monotonic() + 10
    with server.client() as http:
        while in_a_row < 30 and time.monotonic() < deadline:
            response = quote(http)
            assert response.status_code in (200, 409), response.text
            ok = response.status_code == 200 and response.json()["model_version"] == old
            in_a_row = in_a_row + 1 if ok else 0
    assert in_a_row == 30, f"the workers did not all serve version {old} within 10 s"

    seen: list[tuple[int, Any]] = []

    def hammer() -> None:
        with server.client() as http:
            for _ in range(60):
                response = quote(http)
                seen.append((response.status_code, response.json().get("model_version")))

    hammers = [threading.Thread(target=hammer) for _ in range(4)]
    with threads_joined(hammers, timeout=120):
        time.sleep(0.3)
        with server.client() as http:
            response = http.post(f"/api/v1/models/{new}/activate", headers=ADMIN)
        assert response.status_code == 200, response.text
        done_at = time.monotonic()

    assert {status for status, _ in seen} == {200}, Counter(seen)
    assert {version for _, version in seen} <= {old, new}, Counter(seen)
    time.sleep(max(0.0, done_at + 1.5 - time.monotonic()))
    with server.client() as http:
        after = Counter(quote(http).json()["model_version"] for _ in range(50))
    assert after == {new: 50}, f"50 quotes 1.5 s after activating {new}: {after}"
