"""PostgreSQL: sales whose ids were drawn before a training or a live refresh read, committed
after it.

PostgreSQL draws ids from a sequence that no transaction waits for, so a transaction still
writing can hold ids below ones committed since. A training's watermark must still split the
sales exactly: every sale at or below it in the fit, every one above it in the version's live
accuracy, whenever it is committed. (SQLite takes writers one at a time: there ids follow
commits.)
"""

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.fields import to_cents
from app.main import create_app
from app.orm import ModelVersion, Sale, utcnow
from app.schemas.sales import SaleRecord
from app.security import Caller
from app.services.sales import copy_sales, delete_sale, draw_sale_ids, insert_rows, sale_row
from tests.api.test_training import article_rows
from tests.helpers import ADMIN, add_sales, new_store


def _rows(store_id: int, n: int, seed: int) -> list[dict[str, Any]]:
    return [
        sale_row(store_id, SaleRecord(c, to_cents(Decimal(p)), None, None), utcnow())
        for c, p in article_rows(n, seed)
    ]


@contextmanager
def _writing(settings: Settings, store_id: int, drawn_only: bool) -> Iterator[Session]:
    """A transaction that holds the ids of ten sales, drawn now, and commits them when the
    block ends: with its rows already written, or only its ids drawn (the rows follow at the
    end, as insert_rows would have copied them)."""
    db = Database(settings)
    rows = _rows(store_id, 10, seed=3)
    try:
        with db.session(write=True) as session:
            ids = draw_sale_ids(session, len(rows))
            if not drawn_only:
                copy_sales(session, ids, rows)
            yield session
            if drawn_only:
                copy_sales(session, ids, rows)
    finally:
        db.dispose()


def _split_by_watermark(client: TestClient, version: int) -> tuple[int, int]:
    """How many sales have ids at or below the version's watermark, and how many above."""
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        watermark = session.scalar(
            select(ModelVersion.trained_through_sale_id).where(ModelVersion.version == version)
        )
        assert watermark is not None
        below, above = session.execute(
            select(
                func.count().filter(Sale.id <= watermark),
                func.count().filter(Sale.id > watermark),
            )
        ).one()
    return below, above


def _trained(client: TestClient) -> tuple[int, dict[str, str], int]:
    """A store with twenty sales and a version trained on them: the store, its key header,
    the version."""
    store_id, key = new_store(client)
    add_sales(client, key, article_rows(20, seed=1))
    answer = client.post("/api/v1/train", headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return store_id, key, answer.json()["version"]


def _live_sales(client: TestClient, version: int) -> int:
    client.app.state.live.invalidate()  # type: ignore[attr-defined]
    answer = client.get(f"/api/v1/models/{version}")
    assert answer.status_code == 200, answer.text
    n: int = answer.json()["live"]["n_sales"]
    return n


@pytest.mark.parametrize("drawn_only", [False, True], ids=["rows-written", "ids-drawn"])
def test_a_training_takes_none_of_the_ids_a_writer_still_holds(
    pg_settings: Settings, drawn_only: bool
) -> None:
    """A writer holds low ids while higher ones are committed, and a training starts: its
    watermark splits the sales exactly once the writer has committed too."""
    with TestClient(create_app(pg_settings)) as client:
        store_id, key = new_store(client)
        add_sales(client, key, article_rows(20, seed=1))
        engine = client.app.state.db.engine  # type: ignore[attr-defined]
        answers: list[Any] = []
        trainer = threading.Thread(
            target=lambda: answers.append(client.post("/api/v1/train", headers=ADMIN))
        )
        writers_read = threading.Event()

        def on_execute(*args: Any) -> None:
            if "pg_locks" in args[2]:
                writers_read.set()

        with _writing(pg_settings, store_id, drawn_only):
            # Committed while the writer is open: ids above the ones it holds.
            add_sales(client, key, article_rows(20, seed=2))
            event.listen(engine, "after_cursor_execute", on_execute)
            try:
                trainer.start()
                # Until the training has seen this writer, or has answered without looking.
                while trainer.is_alive() and not writers_read.wait(0.01):
                    pass
            finally:
                event.remove(engine, "after_cursor_execute", on_execute)
        trainer.join()

        [answer] = answers
        assert answer.status_code == 201, answer.text
        version = answer.json()
        below, above = _split_by_watermark(client, version["version"])
        assert (version["n_samples"], below + above) == (below, 50)
        assert _live_sales(client, version["version"]) == above


def test_sales_committed_after_a_training_looked_are_above_its_watermark(
    pg_settings: Settings,
) -> None:
    """Writers that begin after a training has read the last id drawn are not waited for.
    One commits before the snapshot begins, while another still holds ids below the first's:
    the snapshot holds the first's sales, but they are above the watermark, with the other's."""
    with TestClient(create_app(pg_settings)) as client:
        store_id, key = new_store(client)
        add_sales(client, key, article_rows(20, seed=1))
        engine = client.app.state.db.engine  # type: ignore[attr-defined]
        open_writer = ExitStack()
        other = Database(pg_settings)

        def on_execute(*args: Any) -> None:
            if "pg_locks" in args[2] and not other_writes:
                open_writer.enter_context(_writing(pg_settings, store_id, drawn_only=True))
                with other.session(write=True) as session:
                    other_writes.extend(insert_rows(session, _rows(store_id, 5, seed=2)))

        other_writes: list[int] = []
        event.listen(engine, "after_cursor_execute", on_execute)
        try:
            with open_writer:
                answer = client.post("/api/v1/train", headers=ADMIN)
        finally:
            event.remove(engine, "after_cursor_execute", on_execute)
            other.dispose()

        assert answer.status_code == 201, answer.text
        version = answer.json()
        assert version["n_samples"] == 20
        assert _split_by_watermark(client, version["version"]) == (20, 15)
        assert _live_sales(client, version["version"]) == 15


def test_the_live_accuracy_counts_sales_committed_below_newer_ones(
    pg_settings: Settings,
) -> None:
    """A registry read while a writer holds low ids, and one after it commits: the second
    counts its sales, though newer ones had been seen first."""
    with TestClient(create_app(pg_settings)) as client:
        store_id, key, version = _trained(client)
        with _writing(pg_settings, store_id, drawn_only=True):
            add_sales(client, key, article_rows(5, seed=2))
            assert _live_sales(client, version) == 5
        assert _live_sales(client, version) == 15


def test_a_training_waits_for_writers_no_longer_than_a_statement_may_run(
    pg_settings: Settings,
) -> None:
    """A writer left open does not hold the training's lease for good: past the statement
    timeout the run is refused, nothing stored, and the next one after the commit goes on."""
    impatient = pg_settings.model_copy(update={"DB_STATEMENT_TIMEOUT_MS": 500})
    with TestClient(create_app(impatient)) as client:
        store_id, key = new_store(client)
        add_sales(client, key, article_rows(20, seed=1))
        with _writing(pg_settings, store_id, drawn_only=True):
            refused = client.post("/api/v1/train", headers=ADMIN)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert "still being written" in refused.json()["detail"]
        assert client.get("/api/v1/models").json()["items"] == []
        answer = client.post("/api/v1/train", headers=ADMIN)
        assert answer.status_code == 201, answer.text
        assert answer.json()["n_samples"] == 30


def test_the_live_accuracy_takes_out_a_deletion_committed_after_a_newer_one(
    pg_settings: Settings,
) -> None:
    """A deletion still to commit, a newer one through the API meanwhile, a registry read in
    between: once both are in, the live count holds neither deleted sale."""
    with TestClient(create_app(pg_settings)) as client:
        _, key, version = _trained(client)
        add_sales(client, key, article_rows(5, seed=2))
        assert _live_sales(client, version) == 5  # settled: kept as sums, not read each time
        first, second = client.get("/api/v1/sales?limit=100", headers=ADMIN).json()["items"][-2:]
        db = Database(pg_settings)
        deleting = threading.Thread(
            target=lambda: client.delete(f"/api/v1/sales/{second['id']}", headers=ADMIN)
        )
        with db.session(write=True) as session:
            delete_sale(session, Caller("admin"), first["id"])
            deleting.start()
            deleting.join(timeout=1)  # it waits for this deletion's turn, or goes ahead
            assert _live_sales(client, version) in (5, 4)
        deleting.join(timeout=30)
        db.dispose()
        assert _live_sales(client, version) == 3
        assert _split_by_watermark(client, version)[1] == 3
