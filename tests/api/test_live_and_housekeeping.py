"""Live accuracy kept incrementally, training on a snapshot, and the purge of old rows."""

import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from app import training
from app.config import Settings
from app.db import Database
from app.live import LiveAccuracyTracker
from app.main import create_app, housekeeping
from app.orm import DeletedSale, IdempotencyKey, ModelVersion, Sale, utcnow
from app.services import aggregates
from app.services.maintenance import PURGE_BATCH
from tests.helpers import ADMIN, THREE_SALES, add_sales, new_store


def live_of(client: TestClient) -> dict[int, dict[str, Any]]:
    client.app.state.live.invalidate()  # type: ignore[attr-defined]
    items = client.get("/api/v1/models", params={"limit": 1000}).json()["items"]
    return {m["version"]: m["live"] for m in items}


def brute_force(client: TestClient) -> dict[int, tuple[int, float | None, float | None]]:
    """Each version's live accuracy from every row, the slow way the tracker avoids."""
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        sales = session.execute(select(Sale.id, Sale.carats, Sale.price_cents)).all()
        versions = session.scalars(select(ModelVersion)).all()
        result = {}
        for v in versions:
            later = [(c, p / 100) for i, c, p in sales if i > (v.trained_through_sale_id or 0)]
            if not later:
                result[v.version] = (0, None, None)
                continue
            x, y = np.array(later).T
            residual = y - (v.silver_price + v.gold_price_per_carat * x)
            result[v.version] = (
                len(later),
                float(np.sqrt(np.mean(residual**2))),
                float(np.mean(residual)),
            )
    return result


def test_live_accuracy_follows_sales_deletions_and_versions(client: TestClient) -> None:
    rng = random.Random(5)
    _, key = new_store(client)

    def sales(n: int) -> list[tuple[float, str]]:
        return [
            (round(rng.uniform(0.5, 20), 3), f"{30 + 50 * rng.uniform(0.5, 20):.2f}")
            for _ in range(n)
        ]

    add_sales(client, key, sales(20))
    for step in range(12):
        action = step % 4
        if action == 0:
            client.post("/api/v1/train", headers=ADMIN)
        elif action == 1:
            add_sales(client, key, sales(rng.randint(1, 15)))
        elif action == 2:
            ids = [s["id"] for s in client.get("/api/v1/sales", headers=key).json()["items"]]
            for sale_id in rng.sample(ids, 3):
                assert client.delete(f"/api/v1/sales/{sale_id}", headers=key).status_code == 204
        else:
            versions = sorted(live_of(client))
            if len(versions) > 2:
                client.delete(f"/api/v1/models/{versions[0]}", headers=ADMIN)
        expected = brute_force(client)
        got = live_of(client)
        assert got.keys() == expected.keys()
        for version, (n, rmse, bias) in expected.items():
            live = got[version]
            assert live["n_sales"] == n, (step, version)
            if n == 0:
                assert live["rmse"] is live["bias"] is None
            else:
                assert live["rmse"] == pytest.approx(rmse, rel=1e-9, abs=1e-9)
                assert live["bias"] == pytest.approx(bias, rel=1e-9, abs=1e-9)
    # A tracker built from nothing agrees with the one that followed every step.
    fresh = LiveAccuracyTracker(client.app.state.db, 1.0, 3600)  # type: ignore[attr-defined]
    with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        rows = session.scalars(select(ModelVersion)).all()
        rebuilt = fresh.of(rows)
    for version, accuracy in rebuilt.items():
        assert accuracy.n_sales == got[version]["n_sales"]


def test_a_registry_read_queries_only_the_sales_since_the_last(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = new_store(client)
    add_sales(client, key, [(1 + i / 100, f"{100 + i}") for i in range(300)])
    client.post("/api/v1/train", headers=ADMIN)
    add_sales(client, key, [(2, "200"), (3, "260")])
    live_of(client)
    spans: list[tuple[int, int]] = []
    real = aggregates.sums_by_segment

    def spy(session: Any, starts: Any, after: int, through: int, shift: Any) -> Any:
        spans.append((after, through))
        return real(session, starts, after, through, shift)

    monkeypatch.setattr("app.live.sums_by_segment", spy)
    add_sales(client, key, [(4, "300")])
    live_of(client)
    assert [(after, through) for after, through in spans if after < through] == [(302, 303)]


def test_a_minibatch_training_sees_one_snapshot_while_sales_are_deleted(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = new_store(client)
    add_sales(client, key, [(1 + i / 10, f"{30 + 50 * (1 + i / 10):.2f}") for i in range(40)])
    monkeypatch.setattr(aggregates, "STREAM_CHUNK_ROWS", 7)
    real_chunks = training.sale_chunks
    deleted: list[int] = []

    def chunks_with_a_delete_midway(session: Any, where: Any) -> Iterator[Any]:
        for index, chunk in enumerate(real_chunks(session, where)):
            yield chunk
            if index == 1 and len(deleted) < 3:
                # Another request deletes a sale while the epoch is half read.
                sale_id = 40 - len(deleted)
                response = client.delete(f"/api/v1/sales/{sale_id}", headers=ADMIN)
                assert response.status_code == 204
                deleted.append(sale_id)

    monkeypatch.setattr(training, "sale_chunks", chunks_with_a_delete_midway)
    response = client.post(
        "/api/v1/train",
        json={"method": "minibatch", "batch_size": 8, "epochs": 3, "random_seed": 1},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    assert len(deleted) == 3
    assert response.json()["n_samples"] == 40


def stored_key(key: str, created_at: datetime) -> IdempotencyKey:
    """An Idempotency-Key of store 1 with its answer, made at ``created_at``."""
    return IdempotencyKey(
        scope="store:1",
        key=key,
        request_hash="x" * 64,
        status_code=201,
        response_body="{}",
        created_at=created_at,
    )


def test_housekeeping_purges_expired_keys_and_old_deletions_in_bounded_batches(
    settings: Settings,
) -> None:
    app = create_app(settings)
    db = app.state.db
    with TestClient(app) as client:
        _, key = new_store(client)
        old = utcnow() - timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS + 1)
        with db.session(write=True) as session:
            session.add_all(stored_key(f"old-{i}", old) for i in range(PURGE_BATCH + 200))
            session.add_all(
                DeletedSale(
                    sale_id=i, carats=1.0, price_cents=100, deleted_at=old - timedelta(days=2)
                )
                for i in range(5)
            )
        fresh = {**key, "Idempotency-Key": "fresh"}
        client.post("/api/v1/sales", json={"carats": 1, "price": 1}, headers=fresh)

        def left() -> tuple[int, int]:
            with db.session() as session:
                keys = session.scalar(select(func.count()).select_from(IdempotencyKey))
                gone = session.scalar(select(func.count()).select_from(DeletedSale))
                return int(keys or 0), int(gone or 0)

        assert left() == (PURGE_BATCH + 201, 5)
        housekeeping(db, settings)
        assert left() == (201, 0)
        housekeeping(db, settings)
        assert left() == (1, 0)  # the fresh key stays


def test_a_key_claimed_afresh_while_the_purge_waits_for_it_stays(pg_settings: Settings) -> None:
    """PostgreSQL: the purge's DELETE, waiting for the lock of an expired key that a request
    is claiming afresh, must leave the claimed key (else the request's retry writes again)."""
    db = Database(pg_settings)
    old = utcnow() - timedelta(hours=pg_settings.IDEMPOTENCY_TTL_HOURS + 1)
    with db.session(write=True) as session:
        session.add(stored_key("again", old))
    purge = threading.Thread(target=housekeeping, args=(db, pg_settings))
    with db.session(write=True) as claiming:
        claiming.execute(
            update(IdempotencyKey).where(IdempotencyKey.key == "again").values(created_at=utcnow())
        )
        purge.start()
        with db.session() as watching:  # until the purge waits for the claim's row lock
            waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            deadline = time.monotonic() + 10
            while not watching.scalar(waiting) and time.monotonic() < deadline:
                time.sleep(0.01)
                watching.rollback()  # a new snapshot of the activity each time
    purge.join(timeout=30)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 1
    db.dispose()


def test_housekeeping_runs_by_itself_in_the_background(settings: Settings) -> None:
    settings.MAINTENANCE_SECONDS = 0.05
    app = create_app(settings)
    with TestClient(app):
        with app.state.db.session(write=True) as session:
            session.add(stored_key("stale", utcnow() - timedelta(days=30)))
        for _ in range(100):
            with app.state.db.session() as session:
                if not session.scalar(select(func.count()).select_from(IdempotencyKey)):
                    break
            time.sleep(0.05)  # the app's event loop runs in the client's thread meanwhile
        with app.state.db.session() as session:
            assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_taking_an_outlier_back_out_keeps_the_live_numbers_exact(client: TestClient) -> None:
    """A typo of $99,999,999.99, recorded then deleted, must not cost the sums their digits."""
    _, key = new_store(client)
    add_sales(client, key, [(1 + i / 100, f"{30 + 50 * (1 + i / 100):.2f}") for i in range(50)])
    client.post("/api/v1/train", headers=ADMIN)
    typo = client.post("/api/v1/sales", json={"carats": 1, "price": "99999999.99"}, headers=key)
    live_of(client)  # the typo is counted, and would be the reference point if it came first
    client.delete(f"/api/v1/sales/{typo.json()['id']}", headers=key)
    rng = random.Random(3)
    add_sales(
        client,
        key,
        [
            (c, f"{30 + 50 * c + rng.uniform(-20, 20):.2f}")
            for c in (rng.uniform(1, 20) for _ in range(2000))
        ],
    )
    expected = brute_force(client)
    for version, live in live_of(client).items():
        n, rmse, bias = expected[version]
        assert live["n_sales"] == n
        assert live["rmse"] == pytest.approx(rmse, rel=1e-9)
        assert live["bias"] == pytest.approx(bias, rel=1e-6, abs=1e-9)


def test_a_sale_committed_after_a_newer_one_is_still_counted(pg_settings: Settings) -> None:
    """PostgreSQL hands out ids when a sale is written but shows it when it commits: an older
    id can become visible after a newer one, and must not be skipped."""
    with TestClient(create_app(pg_settings)) as client:
        store_id, key = new_store(client)
        add_sales(client, key, THREE_SALES)
        client.post("/api/v1/train", headers=ADMIN)
        engine = client.app.state.db.engine  # type: ignore[attr-defined]
        with engine.connect() as slow:
            slow.execute(
                Sale.__table__.insert().values(
                    store_id=store_id,
                    carats=2.0,
                    price_cents=16000,
                    sold_at=utcnow(),
                    created_at=utcnow(),
                )
            )  # not committed yet: its id is below the next sale's
            add_sales(client, key, [(3, "200")])
            assert next(iter(live_of(client).values()))["n_sales"] == 1
            slow.commit()
        assert next(iter(live_of(client).values()))["n_sales"] == 2
        assert live_of(client) == {
            v: {"n_sales": n, "rmse": pytest.approx(r), "bias": pytest.approx(b)}
            for v, (n, r, b) in brute_force(client).items()
        }
