"""Training through the API: what is stored, what is activated, and what is refused."""

import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, event
from sqlalchemy.exc import OperationalError

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.orm import Base, Sale
from app.services import aggregates
from tests.helpers import ADMIN, ADMIN_KEY, add_sales, all_items, new_store

ARTICLE_PLAIN = {
    "learning_rate": 0.01,
    "max_iterations": 1000,
    "tolerance": 0,
    "feature_scaling": False,
}


def article_rows(n: int = 100, seed: int = 7) -> list[tuple[float, str]]:
    rng = np.random.default_rng(seed)
    carats = np.round(25 * rng.random(n), 2) + 0.01
    gold = rng.integers(40, 60, n)
    return [(float(c), f"{30 + g * c:.2f}") for c, g in zip(carats, gold, strict=True)]


def least_squares(rows: list[tuple[float, str]]) -> tuple[float, float]:
    x = np.array([r[0] for r in rows])
    y = np.array([float(r[1]) for r in rows])
    gold, silver = np.polyfit(x, y, 1)
    return float(silver), float(gold)


def test_default_training_lands_on_least_squares_and_activates(client: TestClient) -> None:
    _, key = new_store(client)
    rows = article_rows()
    add_sales(client, key, rows)
    response = client.post("/api/v1/train", headers=ADMIN)
    assert response.status_code == 201, response.text
    version = response.json()
    silver, gold = least_squares(rows)
    assert version["status"] == "converged"
    assert version["active"] is True
    assert version["n_samples"] == 100
    assert version["silver_price"] == pytest.approx(silver, rel=1e-6)
    assert version["gold_price_per_carat"] == pytest.approx(gold, rel=1e-6)
    metrics = version["metrics"]
    assert metrics["optimum_gap"] <= 1e-6
    assert metrics["mae"] > 0
    assert metrics["r2"] > 0.9
    assert {"cost", "mse", "rmse", "residual_std_error"} <= metrics.keys()
    assert version["parameters"]["learning_rate"] == "auto"
    assert version["training_seconds"] >= 0

    history = client.get(f"/api/v1/models/{version['version']}/cost-history").json()
    assert len(history["iterations"]) == len(history["cost"]) == len(history["path"]) >= 1
    assert history["iterations"][-1] == version["iterations"]
    assert history["path"][-1] == pytest.approx(
        [version["silver_price"], version["gold_price_per_carat"]]
    )
    assert_surface_gives_the_costs(history)


def assert_surface_gives_the_costs(history: dict) -> None:  # type: ignore[type-arg]
    """The cost surface, a quadratic around the optimum, gives each recorded cost."""
    surface = history["surface"]
    optimum = np.array(surface["optimum"])
    hessian = np.array(surface["hessian"])
    for point, cost in zip(history["path"], history["cost"], strict=True):
        d = np.array(point) - optimum
        assert surface["min_cost"] + d @ hessian @ d / 2 == pytest.approx(cost, rel=1e-6)


def test_the_articles_plain_run_is_available_and_activated(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, article_rows())
    response = client.post("/api/v1/train", json=ARTICLE_PLAIN, headers=ADMIN)
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["iterations"] == 1000
    assert version["status"] == "completed"
    assert version["active"] is True
    history = client.get(f"/api/v1/models/{version['version']}/cost-history").json()
    assert len(history["cost"]) == len(history["path"]) <= 1000
    assert history["cost"][-1] < history["cost"][0]
    assert_surface_gives_the_costs(history)


def test_a_diverging_learning_rate_is_refused_and_nothing_changes(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, article_rows())
    first = client.post("/api/v1/train", headers=ADMIN).json()
    response = client.post(
        "/api/v1/train", json={**ARTICLE_PLAIN, "learning_rate": 0.5}, headers=ADMIN
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "learning_rate"], "diverges")
    # The rate the message suggests is one that works.
    suggested = float(re.search(r"use ([0-9.e-]+) or 'auto'", error["msg"]).group(1))
    assert suggested < 0.5
    assert client.get("/api/v1/models/active").json()["version"] == first["version"]
    assert len(client.get("/api/v1/models").json()["items"]) == 1
    works = client.post(
        "/api/v1/train",
        json={**ARTICLE_PLAIN, "learning_rate": suggested, "activate": False},
        headers=ADMIN,
    )
    assert works.status_code == 201, works.text


@pytest.mark.parametrize(
    ("rows", "message"),
    [([], "no sales"), ([(2.0, "100"), (2.0, "120")], "distinct")],
)
def test_degenerate_data_is_refused(
    client: TestClient, rows: list[tuple[float, str]], message: str
) -> None:
    _, key = new_store(client)
    if rows:
        add_sales(client, key, rows)
    response = client.post("/api/v1/train", headers=ADMIN)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body"], "training_data")
    assert message in error["msg"].lower()
    assert client.get("/api/v1/models").json()["items"] == []


def test_a_run_that_does_not_converge_is_kept_but_not_activated(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, article_rows())
    body = {"feature_scaling": False, "learning_rate": 0.001, "max_iterations": 5}
    response = client.post("/api/v1/train", json=body, headers=ADMIN)
    assert response.status_code == 201
    assert response.json()["status"] == "not_converged"
    assert response.json()["active"] is False
    assert client.get("/api/v1/prices").status_code == 409
    refused = client.post(f"/api/v1/models/{response.json()['version']}/activate", headers=ADMIN)
    assert refused.status_code == 409


def test_filters_choose_the_sales_a_model_learns_from(client: TestClient) -> None:
    cheap_id, cheap = new_store(client, "Cheap")
    _, dear = new_store(client, "Dear")
    add_sales(client, cheap, [(1, "110"), (2, "150"), (3, "190")])
    add_sales(client, dear, [(1, "500"), (2, "900"), (3, "1300")])
    response = client.post("/api/v1/train", json={"store_ids": [cheap_id]}, headers=ADMIN)
    version = response.json()
    assert version["silver_price"] == pytest.approx(70.0)
    assert version["gold_price_per_carat"] == pytest.approx(40.0)
    assert version["filters"]["store_ids"] == [cheap_id]
    assert version["n_samples"] == 3

    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    client.post("/api/v1/sales", json={"carats": 1, "price": 1, "sold_at": old}, headers=cheap)
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    recent = client.post("/api/v1/train", json={"sold_since": since}, headers=ADMIN).json()
    assert recent["n_samples"] == 6
    backwards = client.post(
        "/api/v1/train", json={"sold_since": since, "sold_until": old}, headers=ADMIN
    )
    assert backwards.status_code == 422


@pytest.mark.parametrize("method", ["minibatch", "sgd"])
def test_stochastic_methods_land_near_the_optimum(client: TestClient, method: str) -> None:
    _, key = new_store(client)
    rng = np.random.default_rng(3)
    carats = rng.uniform(0.5, 25, 400).round(2)
    rows = [(float(c), f"{30 + 50 * c + rng.normal(0, 2):.2f}") for c in carats]
    add_sales(client, key, rows)
    body = {"method": method, "random_seed": 11, "epochs": 30}
    first = client.post("/api/v1/train", json=body, headers=ADMIN)
    assert first.status_code == 201, first.text
    version = first.json()
    silver, gold = least_squares(rows)
    assert float(version["gold_price_per_carat"]) == pytest.approx(gold, rel=0.01)
    assert float(version["silver_price"]) == pytest.approx(silver, rel=0.05)
    again = client.post("/api/v1/train", json=body, headers=ADMIN).json()
    assert again["silver_price"] == version["silver_price"]


def mean_absolute_error(rows: list[tuple[float, str]], silver: float, gold: float) -> float:
    return float(np.mean([abs(float(p) - (silver + gold * c)) for c, p in rows]))


@pytest.mark.parametrize("method", ["batch", "minibatch"])
def test_the_mean_absolute_error_is_over_the_newest_sales(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    _, key = new_store(client)
    rows = article_rows(60)
    add_sales(client, key, rows)
    newest = [
        (sale["carats"], sale["price"])
        for sale in all_items(client, "/api/v1/sales", headers=ADMIN)[-25:]
    ]
    body = {"method": method, "random_seed": 1}
    for sample, measured in [(10_000, rows), (25, newest)]:
        monkeypatch.setattr(aggregates, "MAE_SAMPLE", sample)
        version = client.post("/api/v1/train", json=body, headers=ADMIN).json()
        silver, gold = version["silver_price"], version["gold_price_per_carat"]
        assert version["metrics"]["mae"] == pytest.approx(
            mean_absolute_error(measured, silver, gold), rel=1e-9
        )
    # The newest sales are not all of them: the two measures differ.
    assert mean_absolute_error(newest, silver, gold) != pytest.approx(
        mean_absolute_error(rows, silver, gold), rel=1e-3
    )


@pytest.mark.parametrize(
    "body",
    [
        {"learning_rate": -1},
        {"learning_rate": "fast"},
        {"max_iterations": 0},
        {"tolerance": -1},
        {"method": "newton"},
        {"store_ids": []},
        {"batch_size": 0},
        {"epochs": 0},
        {"random_seed": -1},
        {"sold_since": "not a date"},
        {"nonsense": True},
    ],
)
def test_bad_training_settings_are_422(client: TestClient, body: dict[str, object]) -> None:
    _, key = new_store(client)
    add_sales(client, key, [(1, "10"), (2, "20"), (3, "31")])
    response = client.post("/api/v1/train", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert client.get("/api/v1/models").json()["items"] == []


def test_training_needs_the_admin_key(client: TestClient) -> None:
    _, key = new_store(client)
    assert client.post("/api/v1/train").status_code == 401
    assert client.post("/api/v1/train", headers=key).status_code == 403


def test_each_version_reports_its_error_on_later_sales(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, [(1, "130"), (2, "180"), (3, "230")])
    version = client.post("/api/v1/train", headers=ADMIN).json()
    assert version["live"] == {"n_sales": 0, "rmse": None, "bias": None}
    add_sales(client, key, [(4, "290"), (5, "320")])
    # The registry refreshes at most once per JEWELRY_MODEL_REFRESH_SECONDS; as after one:
    client.app.state.live.invalidate()  # type: ignore[attr-defined]
    live = client.get(f"/api/v1/models/{version['version']}").json()["live"]
    # The line is 80 + 50 x: it quotes 280 and 330, ten off each way.
    assert live == {"n_sales": 2, "rmse": pytest.approx(10.0), "bias": pytest.approx(0.0)}


def test_a_training_runs_through_one_connection_in_a_few_statements(client: TestClient) -> None:
    """Each checkout is a round trip on PostgreSQL (the pool's ping), and so is each
    statement: a run takes its lock, reads its snapshot and writes its version through one
    connection, and answers without reading the live accuracy."""
    _, key = new_store(client)
    add_sales(client, key, article_rows(30))
    engine = client.app.state.db.engine  # type: ignore[attr-defined]
    statements: list[str] = []
    checkouts: list[object] = []

    def on_execute(*args: Any) -> None:
        statements.append(" ".join(args[2].split()))

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "checkout", lambda *_: checkouts.append(1))
    try:
        assert client.post("/api/v1/train", headers=ADMIN).status_code == 201
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert not [s for s in statements if "deleted_sales" in s]
    if engine.dialect.name == "postgresql":
        assert len(checkouts) == 1
        # The lock; the last id drawn and the writers (none to wait for); the newest id with
        # the sums; the MAE; the version with the pointer; the unlock.
        assert len(statements) == 6, statements


@pytest.mark.parametrize("threshold", [1, 10**9])
def test_the_sums_split_over_two_threads_are_those_of_one_pass(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    _, key = new_store(client)
    rows = article_rows(80)
    add_sales(client, key, rows)
    engine = client.app.state.db.engine  # type: ignore[attr-defined]
    sums: list[str] = []

    def on_execute(*args: Any) -> None:
        if "sum(" in args[2] or "regr_count(" in args[2]:
            sums.append(args[2])

    monkeypatch.setattr(aggregates, "PARALLEL_SCAN_IDS", threshold)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        version = client.post("/api/v1/train", headers=ADMIN).json()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    split = engine.dialect.name == "sqlite" and threshold == 1
    assert len(sums) == (2 if split else 1)
    silver, gold = least_squares(rows)
    assert version["n_samples"] == 80
    assert version["silver_price"] == pytest.approx(silver, rel=1e-9)
    assert version["gold_price_per_carat"] == pytest.approx(gold, rel=1e-9)
    x = np.array([r[0] for r in rows])
    y = np.array([float(r[1]) for r in rows])
    r2 = 1 - np.sum((y - silver - gold * x) ** 2) / np.sum((y - y.mean()) ** 2)
    assert version["metrics"]["r2"] == pytest.approx(r2, rel=1e-9)


def test_the_two_scans_begin_on_one_snapshot(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the second connection begins to read while the first's snapshot is open; a
    commit in between would give the halves different sales, so none can come."""
    settings = Settings(DATABASE_URL=sqlite_url, ADMIN_API_KEY=ADMIN_KEY)
    impatient = Database(settings.model_copy(update={"SQLITE_BUSY_TIMEOUT_MS": 0}))
    monkeypatch.setattr(aggregates, "PARALLEL_SCAN_IDS", 1)
    refused: list[str] = []

    def delete_between(*args: Any) -> None:
        if args[2].startswith("SELECT sales.id") and not refused:
            try:
                with impatient.session() as session:
                    session.execute(delete(Sale).where(Sale.id == 1))
            except OperationalError as exc:
                refused.append(str(exc.orig))

    with TestClient(create_app(settings)) as client:
        _, key = new_store(client)
        add_sales(client, key, article_rows(40))
        engine = client.app.state.db.engine  # type: ignore[attr-defined]
        event.listen(engine, "before_cursor_execute", delete_between)
        try:
            version = client.post("/api/v1/train", headers=ADMIN).json()
        finally:
            event.remove(engine, "before_cursor_execute", delete_between)
    assert refused == ["database is locked"]
    assert version["n_samples"] == 40
    impatient.dispose()


def test_sqlite_centres_each_sale_once(sqlite_url: str) -> None:
    """The sums read dx and dc from a co-routine, not each mention anew from the row."""
    query = aggregates._sums_query((1.0, 100), [Sale.id > 0])
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        Base.metadata.create_all(connection)
        compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    engine.dispose()
    assert any("CO-ROUTINE" in row[-1] for row in plan), plan


def test_what_a_training_answers_is_what_it_stored(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, article_rows(30))
    served = client.post("/api/v1/train", headers=ADMIN).json()
    kept = client.post("/api/v1/train", json={"activate": False}, headers=ADMIN).json()
    assert (served["active"], kept["active"]) == (True, False)
    assert kept["version"] > served["version"]
    for answer in (served, kept):
        stored = client.get(f"/api/v1/models/{answer['version']}").json()
        assert stored == {**answer, "active": stored["active"]}
    assert client.get("/api/v1/models/active").json()["version"] == served["version"]


def test_carats_clustered_far_from_zero_keep_their_digits(client: TestClient) -> None:
    """Sums of squares of carats near 9,000 would lose the spread to cancellation; both
    backends' sums keep it (SQLite's around a typical sale, PostgreSQL's around the mean)."""
    rng = np.random.default_rng(3)
    rows = [
        (
            round(9000 + 0.001 * i, 3),
            f"{30 + 50 * (9000 + 0.001 * i) + rng.integers(-500, 500) / 100:.2f}",
        )
        for i in range(200)
    ]
    _, key = new_store(client)
    add_sales(client, key, rows)
    version = client.post("/api/v1/train", headers=ADMIN).json()
    x = [Fraction(c) for c, _ in rows]
    y = [Fraction(p) for _, p in rows]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    gold = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum(
        (a - mx) ** 2 for a in x
    )
    silver = my - gold * mx
    assert version["gold_price_per_carat"] == pytest.approx(float(gold), rel=1e-6)
    assert version["silver_price"] == pytest.approx(float(silver), rel=1e-6)
