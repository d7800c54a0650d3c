"""One contract: content types, the shape of every error, how numbers are written, paging."""

import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.orm import ModelVersion
from tests.conftest import ClientWith
from tests.helpers import ADMIN, THREE_SALES, add_sales, all_items, new_store


def stored_sales(client: TestClient) -> int:
    return len(client.get("/api/v1/sales", headers=ADMIN, params={"limit": 1000}).json()["items"])


def train(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/train", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


# Content types


JSON_WRITES = [
    ("/api/v1/stores", b'{"name": "Form Street"}'),
    ("/api/v1/sales", b'{"carats": 1, "price": 1}'),
    ("/api/v1/sales/batch", b'{"records": [{"carats": 1, "price": 1}]}'),
    ("/api/v1/train", b"{}"),
    ("/api/v1/predict", b'{"carats": [1]}'),
]


@pytest.mark.parametrize(("path", "body"), JSON_WRITES)
@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", None]
)
def test_a_json_body_sent_as_anything_else_is_415(
    client: TestClient, path: str, body: bytes, content_type: str | None
) -> None:
    _, key = new_store(client)
    headers = {**(key if "sales" in path else ADMIN)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert stored_sales(client) == 0


def test_json_with_parameters_or_a_json_suffix_is_json(client: TestClient) -> None:
    _, key = new_store(client)
    for content_type in (
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/x+json",
    ):
        response = client.post(
            "/api/v1/sales",
            content=b'{"carats": 1, "price": 1}',
            headers={**key, "Content-Type": content_type},
        )
        assert response.status_code == 201, (content_type, response.text)


def test_a_post_without_a_body_needs_no_content_type(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    assert client.post("/api/v1/train", headers=ADMIN).status_code == 201


# Errors


def _assert_fastapi_422(response: Any, first_loc: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    for error in detail:
        assert set(error) == {"loc", "msg", "type"}, error
        assert error["loc"][0] == first_loc, error
        assert isinstance(error["msg"], str) and error["msg"]


def test_every_422_has_fastapis_shape(client_with: ClientWith) -> None:
    limits = {"MAX_BATCH_RECORDS": 2, "MAX_PREDICT_CARATS": 2, "MAX_PAGE_SIZE": 10}
    with client_with(**limits) as client:
        _, key = new_store(client)
        add_sales(client, key, THREE_SALES[:2])
        add_sales(client, key, THREE_SALES[2:])
        checks = [
            ("body", client.post("/api/v1/sales", json={"carats": "x"}, headers=key)),
            ("body", client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=ADMIN)),
            (
                "body",
                client.post(
                    "/api/v1/sales/batch",
                    json={"records": [{"carats": 1, "price": 1}] * 3},
                    headers=key,
                ),
            ),
            ("body", client.post("/api/v1/predict", json={"carats": [1, 2, 3]})),
            (
                "body",
                client.post(
                    "/api/v1/train",
                    json={
                        "sold_since": "2026-02-01T00:00:00Z",
                        "sold_until": "2026-01-01T00:00:00Z",
                    },
                    headers=ADMIN,
                ),
            ),
            (
                "body",
                client.post(
                    "/api/v1/train",
                    json={"learning_rate": 100.0, "feature_scaling": False},
                    headers=ADMIN,
                ),
            ),
            ("body", client.post("/api/v1/train", json={"tolerance": 1e6}, headers=ADMIN)),
            ("query", client.get("/api/v1/predict", params={"carats": 0})),
            ("query", client.get("/api/v1/sales", params={"limit": 11}, headers=key)),
            (
                "query",
                client.get(
                    "/api/v1/sales",
                    params={
                        "sold_since": "2026-02-01T00:00:00Z",
                        "sold_until": "2026-01-01T00:00:00Z",
                    },
                    headers=key,
                ),
            ),
            ("path", client.get("/api/v1/models/0")),
            (
                "header",
                client.post(
                    "/api/v1/sales",
                    json={"carats": 1, "price": 1},
                    headers={**key, "Idempotency-Key": ""},
                ),
            ),
        ]
        for first_loc, response in checks:
            _assert_fastapi_422(response, first_loc)
        headers = {**key, "Idempotency-Key": "k-1"}
        client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=headers)
        reused = client.post("/api/v1/sales", json={"carats": 2, "price": 1}, headers=headers)
        _assert_fastapi_422(reused, "header")
        files = {"file": ("s.csv", b"carats,price\n1,abc\n", "text/csv")}
        _assert_fastapi_422(client.post("/api/v1/sales/import", files=files, headers=key), "file")


def test_the_period_rule_names_sold_until(client: TestClient) -> None:
    _, key = new_store(client)
    period = {"sold_since": "2026-02-01T00:00:00Z", "sold_until": "2026-02-01T00:00:00Z"}
    listing = client.get("/api/v1/sales", params=period, headers=key)
    assert listing.json()["detail"][0]["loc"] == ["query", "sold_until"]
    training = client.post("/api/v1/train", json=period, headers=ADMIN)
    assert training.json()["detail"][0]["loc"] == ["body", "sold_until"]


def test_every_other_error_is_a_message(client: TestClient) -> None:
    _, key = new_store(client)
    for response in (
        client.get("/api/v1/sales"),  # 401
        client.post("/api/v1/train", headers=key),  # 403
        client.get("/api/v1/models/9"),  # 404
        client.get("/api/v1/prices"),  # 409
        client.put("/api/v1/prices"),  # 405
        client.post("/api/v1/predict", content=b"{}", headers={"Content-Type": "text/csv"}),
    ):
        assert 400 <= response.status_code < 500 and response.status_code != 422
        assert isinstance(response.json()["detail"], str), response.text


# Numbers


def test_amounts_are_two_decimal_strings_and_estimates_full_precision_numbers(
    client: TestClient,
) -> None:
    _, key = new_store(client)
    add_sales(client, key, [(1, "110"), (2, "150"), (3, "191"), (4, "229.99")])
    version = train(client)
    prices = client.get("/api/v1/prices").json()
    for name in ("silver_price", "gold_price_per_carat"):
        assert isinstance(prices[name], float)
        assert isinstance(prices[f"{name}_std_error"], float)
        interval = prices[f"{name}_interval"]
        assert isinstance(interval["lower"], float) and isinstance(interval["upper"], float)
        assert prices[name] == version[name]
    # The registry and /prices state the same estimates, the same way.
    metrics = client.get(f"/api/v1/models/{version['version']}").json()["metrics"]
    assert metrics["silver_ci"] == [
        prices["silver_price_interval"]["lower"],
        prices["silver_price_interval"]["upper"],
    ]
    assert metrics["gold_std_error"] == prices["gold_price_per_carat_std_error"]

    quote = client.get("/api/v1/predict", params={"carats": 2.5}).json()
    for amount in (quote["price"], quote["interval"]["lower"], quote["interval"]["upper"]):
        assert isinstance(amount, str)
        assert amount == f"{float(amount):.2f}"
    assert quote["price"] == f"{prices['silver_price'] + 2.5 * prices['gold_price_per_carat']:.2f}"
    sale = client.get("/api/v1/sales", headers=key).json()["items"][-1]
    assert sale["price"] == "229.99"


def test_the_openapi_schema_states_the_number_rule(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "amount" in schemas["Prediction"]["properties"]["price"]["description"].lower()
    assert schemas["QuoteInterval"]["properties"]["lower"]["type"] == "string"
    assert "estimate" in schemas["Prices"]["properties"]["silver_price"]["description"].lower()
    assert schemas["EstimateInterval"]["properties"]["lower"]["type"] == "number"
    assert schemas["SalePublic"]["properties"]["price"]["type"] == "string"


# The registry


def test_the_registry_pages_like_the_sales(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    versions = [train(client)["version"] for _ in range(5)]
    seen = [m["version"] for m in all_items(client, "/api/v1/models", limit=2)]
    assert seen == sorted(versions, reverse=True)


def test_a_version_that_does_not_serve_can_be_deleted(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    old, new = train(client)["version"], train(client)["version"]
    active = client.delete(f"/api/v1/models/{new}", headers=ADMIN)
    assert active.status_code == 409
    assert "active" in active.json()["detail"]
    assert client.delete(f"/api/v1/models/{old}", headers=key).status_code == 403
    assert client.delete(f"/api/v1/models/{old}").status_code == 401
    assert client.delete(f"/api/v1/models/{old}", headers=ADMIN).status_code == 204
    assert client.get(f"/api/v1/models/{old}").status_code == 404
    assert client.delete(f"/api/v1/models/{old}", headers=ADMIN).status_code == 404
    assert [m["version"] for m in client.get("/api/v1/models").json()["items"]] == [new]
    assert client.get("/api/v1/predict", params={"carats": 1}).json()["model_version"] == new


# Fits that cannot be shown


def test_a_fit_whose_quotes_cannot_be_amounts_is_refused_and_nothing_stored(
    client: TestClient,
) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    first = train(client)["version"]
    # A legal pair of sales a thousandth of a carat apart, a fortune apart in price: gold at
    # about $1e11 a carat, a quote of $1e15 at 10,000 carats.
    _, odd = new_store(client, "Odd")
    add_sales(client, odd, [(0.001, "0.01"), (0.002, "99999999.99")])
    body = {"store_ids": [2]}
    response = client.post("/api/v1/train", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "unrepresentable_fit"
    listing = client.get("/api/v1/models")
    assert listing.status_code == 200
    assert [m["version"] for m in listing.json()["items"]] == [first]


def test_every_stored_version_renders(client: TestClient) -> None:
    """Versions stored before the check (or by hand) still render, whatever they hold."""
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    good = train(client)
    with client.app.state.db.session(write=True) as session:  # type: ignore[attr-defined]
        row = session.get(ModelVersion, good["version"])
        assert row is not None
        wild = ModelVersion(
            status="converged",
            method="batch",
            parameters=row.parameters,
            filters=row.filters,
            silver_price=-3.5e27,
            gold_price_per_carat=1.2e27,
            metrics={**row.metrics, "rmse": 4e300},
            iterations=1,
            converged=True,
            n_samples=2,
            training_seconds=0.0,
            cost_history={"iterations": [1], "cost": [1e300]},
            estimator=row.estimator,
            trained_through_sale_id=0,
        )
        session.add(wild)
    listing = client.get("/api/v1/models")
    assert listing.status_code == 200
    assert listing.json()["items"][0]["gold_price_per_carat"] == 1.2e27
    assert client.get(f"/api/v1/models/{good['version'] + 1}/cost-history").status_code == 200


# Validation


@pytest.mark.parametrize(
    ("sold_at", "accepted"),
    [
        ("1900-01-01T00:30:00+01:00", False),  # 1899-12-31T23:30Z
        ("1900-01-01T00:30:00-01:00", True),
        ("2099-12-31T23:30:00-01:00", False),  # 2100-01-01T00:30Z
        ("2099-12-31T23:30:00+01:00", True),
        ("2026-11-20T14:30:00Z", True),
        ("\uff12\uff10\uff12\uff16-11-20T14:30:00Z", False),  # full-width digits
    ],
)
def test_sale_times_lie_in_1900_to_2099_in_utc(
    client: TestClient, sold_at: str, accepted: bool
) -> None:
    _, key = new_store(client)
    response = client.post(
        "/api/v1/sales", json={"carats": 1, "price": 1, "sold_at": sold_at}, headers=key
    )
    assert response.status_code == (201 if accepted else 422), response.text


@pytest.mark.parametrize(
    ("carats", "accepted"), [(0.001, True), (0.0009, False), (10_000, True), (10_000.01, False)]
)
def test_carats_lie_in_a_thousandth_to_ten_thousand(
    client: TestClient, carats: float, accepted: bool
) -> None:
    _, key = new_store(client)
    status = 201 if accepted else 422
    sale = client.post("/api/v1/sales", json={"carats": carats, "price": 1}, headers=key)
    assert sale.status_code == status, sale.text
    add_sales(client, key, THREE_SALES)
    train(client)
    assert client.get("/api/v1/predict", params={"carats": carats}).status_code in (
        (200,) if accepted else (422,)
    )
    many = client.post("/api/v1/predict", json={"carats": [carats]})
    assert many.status_code == (200 if accepted else 422)


def test_prices_in_other_digits_are_refused(client: TestClient) -> None:
    _, key = new_store(client)
    # Full-width, Arabic-Indic, and a trailing newline that "$" would let through.
    for price in ("\uff11\uff12.\uff15\uff10", "\u0661\u0662", "12.5\n"):
        response = client.post("/api/v1/sales", json={"carats": 1, "price": price}, headers=key)
        assert response.status_code == 422, price
    assert stored_sales(client) == 0


def test_store_names_are_nfc_and_unique_in_that_form(client: TestClient) -> None:
    decomposed = unicodedata.normalize("NFD", "Café Doré")
    first = client.post("/api/v1/stores", json={"name": decomposed}, headers=ADMIN)
    assert first.status_code == 201
    assert first.json()["name"] == unicodedata.normalize("NFC", "Café Doré")
    again = client.post("/api/v1/stores", json={"name": "Café Doré"}, headers=ADMIN)
    assert again.status_code == 409
    # U+0344 is two characters in NFC: 100 of them are 200 stored characters.
    for name in ("Zero\u200bWidth", "Right\u202eLeft", "Soft\u00adHyphen", "Bell\u0007",
                 "Line\u2028Break", "\u0344" * 100):  # fmt: skip
        refused = client.post("/api/v1/stores", json={"name": name}, headers=ADMIN)
        assert refused.status_code == 422, name
        assert refused.json()["detail"][0]["loc"] == ["body", "name"]
    # And 120 decomposed characters that are 60 in NFC are a name of 60.
    shrinks = client.post("/api/v1/stores", json={"name": "e\u0301" * 60}, headers=ADMIN)
    assert shrinks.status_code == 201, shrinks.text
    assert len(shrinks.json()["name"]) == 60


def test_an_overlong_api_key_is_401(client: TestClient) -> None:
    response = client.get("/api/v1/sales", headers={"X-API-Key": "k" * 5000})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("ApiKey")


def test_the_page_size_setting_governs_the_page_size(client_with: ClientWith) -> None:
    with client_with(MAX_PAGE_SIZE=2_500) as client:
        _, key = new_store(client)
        add_sales(client, key, [(1 + i / 1000, "100") for i in range(2_100)])
        page = client.get("/api/v1/sales", params={"limit": 2_200}, headers=key)
        assert page.status_code == 200
        assert len(page.json()["items"]) == 2_100
        assert client.get("/api/v1/sales", params={"limit": 2_501}, headers=key).status_code == 422
        parameters = client.get("/openapi.json").json()["paths"]["/api/v1/sales"]["get"][
            "parameters"
        ]
        [limit] = [p for p in parameters if p["name"] == "limit"]
        assert {"type": "integer", "minimum": 1, "maximum": 2_500} in limit["schema"]["anyOf"]
    with client_with(MAX_PAGE_SIZE=10) as client:
        _, key = new_store(client, "Small pages")
        add_sales(client, key, [(1 + i / 1000, "100") for i in range(15)])
        assert len(client.get("/api/v1/sales", headers=key).json()["items"]) == 10


def test_a_hyperparameter_the_core_refuses_is_named_in_the_loc(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    response = client.post("/api/v1/train", json={"method": "sgd", "batch_size": 8}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "batch_size"]


def test_a_tolerance_that_would_stop_before_moving_is_refused(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    response = client.post("/api/v1/train", json={"tolerance": 1e6}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "tolerance"]
    assert client.get("/api/v1/models").json()["items"] == []


def test_created_at_and_sold_at_read_back_in_utc(client: TestClient) -> None:
    _, key = new_store(client)
    sale = client.post(
        "/api/v1/sales",
        json={"carats": 1, "price": 1, "sold_at": "2026-11-20T14:30:00+02:00"},
        headers=key,
    ).json()
    assert sale["sold_at"] == "2026-11-20T12:30:00Z"
    assert datetime.fromisoformat(sale["created_at"]).tzinfo == UTC
