"""Health, metrics, request ids, logs, and the admin key made at first start."""

import io
import json
import logging
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app import migrate
from app.config import Settings
from app.logs import JsonFormatter
from app.main import create_app
from tests.helpers import ADMIN, ADMIN_KEY, THREE_SALES, add_sales, new_store


def test_health(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok", "detail": None}
    assert client.get("/health/ready").json() == {"status": "ok", "detail": None}


def test_ready_is_503_when_the_schema_is_behind(settings: Settings) -> None:
    settings.MIGRATE_ON_START = False
    app = create_app(settings)
    migrate.downgrade(app.state.db.engine, "base")
    try:
        with TestClient(app) as client:
            response = client.get("/health/ready")
            assert response.status_code == 503
            assert "expected" in response.json()["detail"]
            assert response.headers["Retry-After"]
            assert client.get("/health/live").status_code == 200
    finally:
        migrate.upgrade(app.state.db.engine)


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/health/live").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    hostile = client.get("/health/live", headers={"X-Request-ID": "x\ty" * 100})
    assert hostile.headers["X-Request-ID"] != "x\ty" * 100


def test_metrics_count_requests_predictions_training_and_sales(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    client.post("/api/v1/train", headers=ADMIN)
    client.get("/api/v1/predict", params={"carats": 2})
    client.post("/api/v1/predict", json={"carats": [1, 2, 3]})
    client.get("/api/v1/sales/12345", headers=ADMIN)
    text = client.get("/metrics").text
    assert 'jewelry_sales_ingested_total{via="batch"} 3.0' in text
    assert 'jewelry_training_runs_total{outcome="converged"} 1.0' in text
    assert "jewelry_predictions_total 4.0" in text
    assert (
        'jewelry_http_requests_total{method="GET",route="/api/v1/sales/{sale_id}",status="404"} 1.0'
        in text
    )
    assert 'jewelry_http_request_duration_seconds_bucket{le="0.005",method="GET"' in text
    assert "jewelry_active_model_version 1.0" in text


def test_no_key_reaches_the_logs(client: TestClient) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        _, key = new_store(client)
        client.get("/api/v1/sales", headers=key)
        client.get("/api/v1/sales", headers={"X-API-Key": "jf_store_wrong-key-value"})
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "app.access"]
    assert [(a["route"], a["status"]) for a in access] == [
        ("/api/v1/stores", 201),
        ("/api/v1/sales", 200),
        ("/api/v1/sales", 401),
    ]
    assert all(a["request_id"] for a in access)
    for secret in (key["X-API-Key"], ADMIN_KEY, "jf_store_wrong-key-value"):
        assert secret not in stream.getvalue()


def test_an_admin_key_is_generated_once_when_none_is_configured(
    sqlite_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(DATABASE_URL=sqlite_url)
    with TestClient(create_app(settings)):
        pass
    out, err = capfd.readouterr()
    [key] = re.findall(r"jf_admin_[A-Za-z0-9_-]{43}", out)
    assert key not in err
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/stores", headers={"X-API-Key": key}).status_code == 200
        assert client.get("/api/v1/stores", headers=ADMIN).status_code == 401
    out, _ = capfd.readouterr()
    assert "jf_admin_" not in out
    # Only the hash is stored.
    assert key.encode() not in Path(str(make_url(sqlite_url).database)).read_bytes()


def _request_label_sets(text: str) -> set[str]:
    return {
        line.split("}")[0]
        for line in text.splitlines()
        if line.startswith("jewelry_http_requests_total{")
    }


def test_made_up_methods_and_paths_add_no_metric_series(client: TestClient) -> None:
    def junk(start: int, count: int) -> None:
        for n in range(start, start + count):
            method = f"JUNK{n}" if n % 3 else f"x{n}" * 50
            path = "/health/live" if n % 2 else f"/no/such/path/{n}"
            assert client.request(method, path).status_code in (404, 405)

    junk(0, 20)
    client.get("/metrics")
    before = client.get("/metrics").text
    junk(20, 500)
    after = client.get("/metrics").text
    assert _request_label_sets(after) == _request_label_sets(before)
    assert len(after) < len(before) + 200  # only the counts grew
    assert 'method="other",route="unmatched",status="404"} 260.0' in after
    assert 'method="other",route="/health/live",status="405"} 260.0' in after
    assert "JUNK" not in after
