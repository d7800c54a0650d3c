"""The model registry, activation (roll back and forward), prices and predictions."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from app.fields import QueryCarats
from app.orm import ModelVersion
from tests.conftest import ClientWith
from tests.helpers import ADMIN, THREE_SALES, add_sales, new_store


def train(client: TestClient, rows: list[tuple[float, str]]) -> dict:  # type: ignore[type-arg]
    _, key = new_store(client, f"Store {len(rows)} {rows[0][1]}")
    add_sales(client, key, rows)
    response = client.post("/api/v1/train", headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def test_no_model_yet_answers_409_saying_to_train(client: TestClient) -> None:
    for path in ("/api/v1/prices", "/api/v1/predict?carats=1", "/api/v1/models/active"):
        response = client.get(path)
        assert response.status_code == 409
        assert "train" in response.json()["detail"]
    response = client.post("/api/v1/predict", json={"carats": [1]})
    assert response.status_code == 409


def test_registry_lists_gets_and_rolls_back(client: TestClient) -> None:
    first = train(client, [(1, "110"), (2, "150"), (3, "190")])
    second = train(client, [(1, "500"), (2, "900"), (3, "1300"), (4, "1700")])
    items = client.get("/api/v1/models").json()["items"]
    assert [m["version"] for m in items] == [second["version"], first["version"]]
    assert [m["active"] for m in items] == [True, False]

    got = client.get(f"/api/v1/models/{first['version']}").json()
    assert got["silver_price"] == pytest.approx(70.0)
    assert got["active"] is False

    rolled = client.post(f"/api/v1/models/{first['version']}/activate", headers=ADMIN)
    assert rolled.status_code == 200
    assert rolled.json()["active"] is True
    assert client.get("/api/v1/models/active").json()["version"] == first["version"]
    # The process that activated serves the new version at once.
    assert (
        client.get("/api/v1/predict", params={"carats": 2}).json()["model_version"]
        == first["version"]
    )
    assert client.get("/api/v1/prices").json()["silver_price"] == pytest.approx(70.0)


def test_registry_errors(client: TestClient) -> None:
    _, key = new_store(client)
    assert client.get("/api/v1/models/42").status_code == 404
    assert client.get("/api/v1/models/42/cost-history").status_code == 404
    assert client.get("/api/v1/models/0").status_code == 422
    assert client.get("/api/v1/models/99999999999999999999").status_code == 422
    assert client.post("/api/v1/models/42/activate", headers=ADMIN).status_code == 404
    assert client.post("/api/v1/models/42/activate", headers=key).status_code == 403
    assert client.post("/api/v1/models/42/activate").status_code == 401


def test_prices_report_errors_and_intervals(client: TestClient) -> None:
    version = train(client, [(1, "150"), (2, "250"), (3, "250"), (4, "330"), (5, "390")])
    prices = client.get("/api/v1/prices").json()
    assert prices["model_version"] == version["version"]
    assert prices["n_samples"] == 5
    assert prices["silver_price_std_error"] > 0
    interval = prices["gold_price_per_carat_interval"]
    assert interval["level"] == 0.95
    assert (
        float(interval["lower"]) < float(prices["gold_price_per_carat"]) < float(interval["upper"])
    )


def test_predictions_single_and_many(client: TestClient) -> None:
    version = train(client, [(1, "110"), (2, "150"), (3, "190"), (4, "231")])
    one = client.get("/api/v1/predict", params={"carats": 15})
    assert one.status_code == 200
    body = one.json()
    assert body["carats"] == 15
    assert body["model_version"] == version["version"]
    price = float(body["price"])
    lower, upper = float(body["interval"]["lower"]), float(body["interval"]["upper"])
    assert lower < price < upper
    assert price == pytest.approx(69.5 + 40.3 * 15, abs=0.01)

    many = client.post("/api/v1/predict", json={"carats": [1, 2.5, 15]}).json()
    assert many["model_version"] == version["version"]
    assert [p["carats"] for p in many["predictions"]] == [1, 2.5, 15]
    assert many["predictions"][2]["price"] == body["price"]


def test_exact_fit_with_two_sales_has_no_interval(client: TestClient) -> None:
    train(client, [(1, "110"), (2, "150")])
    body = client.get("/api/v1/predict", params={"carats": 3}).json()
    assert body["price"] == "190.00"
    assert body["interval"] is None


@pytest.mark.parametrize("carats", ["0", "-1", "inf", "nan", "abc", "1e309", "20000"])
def test_bad_carats_are_422(client: TestClient, carats: str) -> None:
    train(client, THREE_SALES)
    response = client.get("/api/v1/predict", params={"carats": carats})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "carats"]
    assert client.get("/api/v1/predict").status_code == 422


def test_many_predictions_are_bounded(client_with: ClientWith) -> None:
    with client_with(MAX_PREDICT_CARATS=5) as client:
        train(client, THREE_SALES)
        assert client.post("/api/v1/predict", json={"carats": [1] * 5}).status_code == 200
        too_many = client.post("/api/v1/predict", json={"carats": [1] * 6})
        assert too_many.status_code == 422
        assert too_many.json()["detail"] == [
            {
                "loc": ["body", "carats"],
                "msg": "List should have at most 5 items after validation, not 6",
                "type": "too_long",
            }
        ]
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert schema["PredictRequest"]["properties"]["carats"]["maxItems"] == 5
        assert client.post("/api/v1/predict", json={"carats": []}).status_code == 422
        assert client.post("/api/v1/predict", json={"carats": [1, -2]}).status_code == 422


def test_private_reads_need_a_key(client_with: ClientWith) -> None:
    with client_with(PUBLIC_READS=False) as client:
        _, key = new_store(client)
        train(client, THREE_SALES)
        for path in ("/api/v1/prices", "/api/v1/predict?carats=1", "/api/v1/models"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
            assert client.get(path, headers=key).status_code == 200
            assert client.get(path, headers=ADMIN).status_code == 200


def test_prices_history_fits_each_month_and_week_from_its_own_sales(client: TestClient) -> None:
    store_id, key = new_store(client)
    # October: silver 20, gold 40; November: silver 30, gold 50 (exact lines, no noise).
    months = {"2026-10": (20.0, 40.0), "2026-11": (30.0, 50.0)}
    for month, (silver, gold) in months.items():
        records = [
            {
                "carats": c,
                "price": f"{silver + gold * c:.2f}",
                "sold_at": f"{month}-{day:02d}T12:00:00Z",
            }
            for c, day in ((1, 2), (2, 9), (4, 16), (5, 23))
        ]
        assert (
            client.post("/api/v1/sales/batch", json={"records": records}, headers=key).status_code
            == 201
        )
    _other_id, other = new_store(client, "Elsewhere")
    add_sales(client, other, [(1, "999"), (2, "1999")])

    history = client.get("/api/v1/prices/history", params={"store_id": store_id}).json()
    assert history["period"] == "month"
    assert [p["period_start"] for p in history["items"]] == ["2026-10-01", "2026-11-01"]
    for item, (silver, gold) in zip(history["items"], months.values(), strict=True):
        assert item["n_samples"] == 4
        assert item["silver_price"] == pytest.approx(silver, rel=1e-9)
        assert item["gold_price_per_carat"] == pytest.approx(gold, rel=1e-9)
        assert (
            item["silver_price_interval"]["lower"]
            <= silver
            <= item["silver_price_interval"]["upper"]
        )

    weekly = client.get(
        "/api/v1/prices/history",
        params={"store_id": store_id, "period": "week", "sold_until": "2026-11-01T00:00:00Z"},
    ).json()
    # 2026-10-02 is a Friday: its week starts on Monday 2026-09-28; one sale a week, so no fit.
    assert [p["period_start"] for p in weekly["items"]] == [
        "2026-09-28",
        "2026-10-05",
        "2026-10-12",
        "2026-10-19",
    ]
    assert all(p["n_samples"] == 1 and p["silver_price"] is None for p in weekly["items"])
    assert client.get("/api/v1/prices/history", params={"period": "year"}).status_code == 422


def test_a_periods_fit_is_exact_whatever_the_first_sale_was(client: TestClient) -> None:
    """Sums are taken around a typical sale: an outlier first sale in January costs
    February's fit no digits."""
    _, key = new_store(client)
    outlier = {"carats": 0.001, "price": "99999999.99", "sold_at": "2026-01-05T00:00:00Z"}
    client.post("/api/v1/sales", json=outlier, headers=key)
    rng = np.random.default_rng(4)
    carats = rng.uniform(0.5, 25, 2000).round(3)
    prices = (30 + 50 * carats + rng.normal(0, 5, carats.size)).round(2)
    records = [
        {"carats": float(c), "price": f"{p:.2f}", "sold_at": "2026-02-10T00:00:00Z"}
        for c, p in zip(carats, prices, strict=True)
    ]
    client.post("/api/v1/sales/batch", json={"records": records}, headers=key)
    february = client.get("/api/v1/prices/history").json()["items"][-1]
    design = np.column_stack([np.ones_like(carats), carats])
    (silver, gold), *_ = np.linalg.lstsq(design, prices, rcond=None)
    residual = prices - design @ [silver, gold]
    sigma2 = residual @ residual / (carats.size - 2)
    errors = np.sqrt(np.diag(sigma2 * np.linalg.inv(design.T @ design)))
    assert february["silver_price"] == pytest.approx(silver, rel=1e-9)
    assert february["silver_price_std_error"] == pytest.approx(errors[0], rel=1e-6)
    assert february["gold_price_per_carat_std_error"] == pytest.approx(errors[1], rel=1e-6)


def test_a_big_quote_request_runs_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hundred thousand quotes take tens of milliseconds: on the event loop they would hold
    up every other request the worker has, /health/live included."""
    from app.routes import pricing

    on_loop: list[bool] = []
    quotes = pricing.many_quotes_json

    def watched(*args: object) -> object:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return quotes(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pricing, "many_quotes_json", watched)
    train(client, THREE_SALES)
    assert client.post("/api/v1/predict", json={"carats": [1, 2]}).status_code == 200
    big = client.post("/api/v1/predict", json={"carats": [1.5] * 10_000})
    assert big.status_code == 200 and len(big.json()["predictions"]) == 10_000
    assert on_loop == [True, False]


QUERY_TEXT = st.text(alphabet="0123456789.eE+-%&x ", max_size=16)


@given(query=QUERY_TEXT.map(lambda text: "carats=" + text) | st.from_regex(r"carats=[0-9.]{1,9}"))
@settings(max_examples=400, deadline=None)
def test_the_quote_shortcut_takes_only_what_the_route_accepts_as_the_route_reads_it(
    query: str,
) -> None:
    from app.shortcuts import plain_carats

    carats = plain_carats(query.encode())
    event("shortcut" if carats is not None else "route")
    if carats is not None:
        [(name, value)] = parse_qsl(query, keep_blank_values=True)
        assert name == "carats"
        assert TypeAdapter(QueryCarats).validate_python(value) == carats


def test_shortcut_and_route_answer_a_quote_alike(client: TestClient) -> None:
    train(client, THREE_SALES)
    plain = client.get("/api/v1/predict?carats=15")  # the shortcut
    for query in ("carats=1.5e1", "carats=15&unknown=1", "carats=%31%35"):  # the route
        routed = client.get(f"/api/v1/predict?{query}")
        assert routed.status_code == 200
        assert routed.content == plain.content
        assert routed.headers["content-type"] == plain.headers["content-type"]
    assert plain.headers["x-request-id"]
    assert client.get("/api/v1/predict?carats=10001").status_code == 422
    metrics = client.get("/metrics").text
    assert 'route="/api/v1/predict",status="200"} 4.0' in metrics
    assert "jewelry_predictions_total 4.0" in metrics


def test_big_quote_requests_are_written_two_at_a_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each holds tens of megabytes while it is written: twenty at once took a worker from
    185 MB to 860 MB."""
    from app.routes import pricing

    running, most = 0, 0
    lock = threading.Lock()
    quotes = pricing.many_quotes_json

    def watched(*args: object) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return quotes(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pricing, "many_quotes_json", watched)
    train(client, THREE_SALES)

    def ask(_: int) -> int:
        return client.post("/api/v1/predict", json={"carats": [1.5] * 3_000}).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(ask, range(6))) == [200] * 6
    assert most == 2


def test_carats_a_stored_version_cannot_price_are_a_422(client: TestClient) -> None:
    # Training now refuses such a fit; a version stored before it did may still hold one.
    version = train(client, THREE_SALES)["version"]
    state = client.app.state  # type: ignore[attr-defined]
    with state.db.session(write=True) as session:
        row = session.get(ModelVersion, version)
        assert row is not None
        row.estimator = {**row.estimator, "gold_price_per_carat": 9.99e8}
    state.model_cache.invalidate()
    assert client.get("/api/v1/predict?carats=1").status_code == 200
    for answer, where in (
        (client.get("/api/v1/predict?carats=5000"), ["query", "carats"]),  # the shortcut's
        (client.get("/api/v1/predict?carats=5e3"), ["query", "carats"]),  # the route's
        (client.post("/api/v1/predict", json={"carats": [1, 5000]}), ["body", "carats"]),
        (client.post("/api/v1/predict", json={"carats": [5000] * 150}), ["body", "carats"]),
    ):
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["detail"]
        assert error["loc"] == where
        assert "too large to price" in error["msg"]
