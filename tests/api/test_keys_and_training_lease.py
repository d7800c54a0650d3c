"""Key rotation and revocation, the access matrix, and one training run at a time."""

import itertools
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app import training
from app.config import Settings
from app.db import Database, backend
from app.lease import training_lease
from app.main import create_app
from app.orm import Store, TrainingLease, utcnow
from app.security import hash_key
from models import RingPriceRegressor
from tests.conftest import ClientWith
from tests.helpers import ADMIN, ADMIN_KEY, THREE_SALES, add_sales, new_store

NO_KEY: dict[str, str] = {}
WRONG = {"X-API-Key": "jf_store_" + "x" * 43}


def test_rotating_a_key_retires_the_old_one(client: TestClient) -> None:
    store_id, old = new_store(client)
    rotated = client.post(f"/api/v1/stores/{store_id}/key", headers=old)
    assert rotated.status_code == 200
    new = {"X-API-Key": rotated.json()["api_key"]}
    assert new != old
    assert client.get("/api/v1/sales", headers=old).status_code == 401
    assert client.get("/api/v1/sales", headers=new).status_code == 200
    by_admin = client.post(f"/api/v1/stores/{store_id}/key", headers=ADMIN)
    assert by_admin.status_code == 200
    assert client.get("/api/v1/sales", headers=new).status_code == 401


def test_revoking_a_key_locks_the_store_out_until_rotated(client: TestClient) -> None:
    store_id, key = new_store(client)
    other_id, other = new_store(client, "Other")
    assert client.delete(f"/api/v1/stores/{store_id}/key", headers=key).status_code == 403
    assert client.post(f"/api/v1/stores/{store_id}/key", headers=other).status_code == 403
    assert client.delete(f"/api/v1/stores/{store_id}/key", headers=ADMIN).status_code == 204
    revoked = client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=key)
    assert revoked.status_code == 401
    assert client.delete("/api/v1/stores/999/key", headers=ADMIN).status_code == 404
    assert client.post(f"/api/v1/stores/{store_id}/key", headers=ADMIN).status_code == 200
    assert other_id != store_id


def test_access_matrix(client: TestClient) -> None:
    """Every endpoint under every kind of caller: anonymous, a wrong key, another store's key,
    the store's own key, the admin key. (Key rotation and revocation have their own tests.)"""
    _, own = new_store(client, "Own")
    _, other = new_store(client, "Other")
    add_sales(client, own, THREE_SALES)
    client.post("/api/v1/train", headers=ADMIN)
    sale = client.post("/api/v1/sales", json={"carats": 1, "price": 9}, headers=own).json()
    names = itertools.count()

    def body(method: str, path: str) -> dict[str, object]:
        if method != "POST":
            return {}
        if path == "/api/v1/sales/import":
            return {"files": {"file": ("s.csv", b"carats,price\n1,2\n", "text/csv")}}
        return {
            "/api/v1/sales": {"json": {"carats": 1, "price": 1}},
            "/api/v1/sales/batch": {"json": {"records": [{"carats": 1, "price": 1}]}},
            "/api/v1/stores": {"json": {"name": f"Store {next(names)}"}},
            "/api/v1/predict": {"json": {"carats": [1]}},
        }.get(path, {})

    # The admin must name the store of a sale, hence its 422 on the three sale writes.
    matrix = [  # anonymous, wrong key, other store, own store, admin
        ("GET", "/health/live", (200, 200, 200, 200, 200)),
        ("GET", "/health/ready", (200, 200, 200, 200, 200)),
        ("GET", "/api/v1/stores", (401, 401, 403, 403, 200)),
        ("POST", "/api/v1/stores", (401, 401, 403, 403, 201)),
        ("POST", "/api/v1/sales", (401, 401, 201, 201, 422)),
        ("POST", "/api/v1/sales/batch", (401, 401, 201, 201, 422)),
        ("POST", "/api/v1/sales/import", (401, 401, 201, 201, 422)),
        ("GET", "/api/v1/sales", (401, 401, 200, 200, 200)),
        ("GET", f"/api/v1/sales/{sale['id']}", (401, 401, 403, 200, 200)),
        ("POST", "/api/v1/train", (401, 401, 403, 403, 201)),
        ("GET", "/api/v1/models", (200, 200, 200, 200, 200)),
        ("GET", "/api/v1/models/active", (200, 200, 200, 200, 200)),
        ("GET", "/api/v1/models/1", (200, 200, 200, 200, 200)),
        ("GET", "/api/v1/models/1/cost-history", (200, 200, 200, 200, 200)),
        ("POST", "/api/v1/models/1/activate", (401, 401, 403, 403, 200)),
        ("GET", "/api/v1/prices", (200, 200, 200, 200, 200)),
        ("GET", "/api/v1/predict?carats=2", (200, 200, 200, 200, 200)),
        ("POST", "/api/v1/predict", (200, 200, 200, 200, 200)),
        ("GET", "/metrics", (200, 200, 200, 200, 200)),
        ("DELETE", f"/api/v1/sales/{sale['id']}", (401, 401, 403, 204, 404)),
    ]
    for method, path, expected in matrix:
        got = tuple(
            client.request(method, path, headers=headers, **body(method, path)).status_code  # type: ignore[arg-type]
            for headers in (NO_KEY, WRONG, other, own, ADMIN)
        )
        assert got == expected, f"{method} {path}"


def test_a_second_training_while_one_runs_is_409(settings: Settings, client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    db = Database(settings)
    with db.engine.connect() as connection, training_lease(db, connection, timedelta(minutes=5)):
        busy = client.post("/api/v1/train", headers=ADMIN)
        assert busy.status_code == 409
        assert busy.headers["Retry-After"]
        assert "in progress" in busy.json()["detail"]
    assert client.post("/api/v1/train", headers=ADMIN).status_code == 201
    assert 'jewelry_training_runs_total{outcome="busy"} 1.0' in client.get("/metrics").text
    db.dispose()


def test_a_dead_holders_lease_expires(sqlite_url: str) -> None:
    """SQLite only: on PostgreSQL the server drops a dead holder's advisory lock itself."""
    settings = Settings(DATABASE_URL=sqlite_url, ADMIN_API_KEY=ADMIN_KEY)
    db = Database(settings)
    with TestClient(create_app(settings)) as client:
        _, key = new_store(client)
        add_sales(client, key, THREE_SALES)
        later = utcnow() + timedelta(hours=1)
        with db.session(write=True) as session:
            session.execute(update(TrainingLease).values(holder="killed", expires_at=later))
        assert client.post("/api/v1/train", headers=ADMIN).status_code == 409
        earlier = utcnow() - timedelta(seconds=1)
        with db.session(write=True) as session:
            session.execute(update(TrainingLease).values(expires_at=earlier))
        assert client.post("/api/v1/train", headers=ADMIN).status_code == 201
    db.dispose()


def test_training_holds_no_write_lock_while_it_computes(
    settings: Settings, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    impatient = Database(settings.model_copy(update={"SQLITE_BUSY_TIMEOUT_MS": 0}))
    writes: list[int] = []

    class WritesWhileFitting(RingPriceRegressor):
        def fit_stats(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            with impatient.session(write=True) as session:
                session.execute(
                    update(TrainingLease).values(expires_at=utcnow() + timedelta(hours=1))
                )
                writes.append(1)
            return super().fit_stats(*args, **kwargs)

    monkeypatch.setattr(training, "RingPriceRegressor", WritesWhileFitting)
    assert client.post("/api/v1/train", headers=ADMIN).status_code == 201
    assert writes == [1]
    impatient.dispose()


def test_keys_are_random_and_stored_only_as_hashes(settings: Settings, client: TestClient) -> None:
    keys = [new_store(client, f"Store {i}")[1]["X-API-Key"] for i in range(3)]
    assert len(set(keys)) == 3
    # 32 random bytes, URL-safe base64: 256 bits after the prefix.
    assert all(len(k.removeprefix("jf_store_")) == 43 for k in keys)
    db = Database(settings)
    with db.session() as session:
        hashes = set(session.scalars(select(Store.api_key_hash)))
    db.dispose()
    assert hashes == {hash_key(k) for k in keys}
    if backend(settings.DATABASE_URL) == "sqlite":
        path = Path(settings.DATABASE_URL.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        on_disk = b"".join(f.read_bytes() for f in files if f.exists())
        assert not any(k.encode() in on_disk for k in keys)


def test_a_long_training_keeps_renewing_its_lease(
    client_with: ClientWith, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    class Slow(RingPriceRegressor):
        def fit_stats(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(1.2)  # four lease times: only renewal keeps others out
            with client_with(TRAINING_LEASE_SECONDS=0.3) as other:
                seen.append(other.post("/api/v1/train", headers=ADMIN).status_code)
            return super().fit_stats(*args, **kwargs)

    monkeypatch.setattr(training, "RingPriceRegressor", Slow)
    with client_with(TRAINING_LEASE_SECONDS=0.3) as client:
        _, key = new_store(client)
        add_sales(client, key, THREE_SALES)
        assert client.post("/api/v1/train", headers=ADMIN).status_code == 201
    assert seen == [409]
