"""Demo data: three stores, their sales, and models trained on them.

The command line's `demo`, the benchmarks and the fuzz tests load the same data this way.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from sqlalchemy import func, select

from app import training
from app.config import Settings
from app.db import Database
from app.fields import to_cents
from app.orm import ModelVersion, Store
from app.schemas.registry import TrainRequest
from app.schemas.sales import SaleRecord
from app.security import Caller
from app.services import sales, stores

DEMO_STORES = ("Aurum & Co", "Goldsmith Lane", "Carat Corner")
# Sales written per transaction: bounded memory, and a progress bar that moves.
CHUNK = 10_000
# The article's plain algorithm on the demo's carats (up to 25): raw feature, a fixed number
# of steps, at the rate 'auto' picks for raw carats. Kept, not activated: the dashboard shows
# its long walk down the cost valley.
PLAIN_RUN = TrainRequest(
    learning_rate="auto", max_iterations=1000, tolerance=0, feature_scaling=False, activate=False
)


def demo_sales(
    rng: np.random.Generator, n: int, now: datetime
) -> list[tuple[float, Decimal, datetime]]:
    """Rings of 0.5-25 carats with about $30 of silver and gold at $40-60 a carat, sold in
    the 90 days before ``now``."""
    carats = np.round(rng.uniform(0.5, 25.0, n), 2)
    gold = rng.uniform(40.0, 60.0, n)
    silver = rng.normal(30.0, 1.5, n)
    ages = rng.uniform(0, 90, n)
    return [
        (float(c), Decimal(f"{s + g * c:.2f}"), now - timedelta(days=float(a)))
        for c, g, s, a in zip(carats, gold, silver, ages, strict=True)
    ]


def load_demo(
    db: Database,
    settings: Settings,
    *,
    n_sales: int = 300,
    seed: int = 42,
    progress: Callable[[int], object] = lambda _: None,
) -> ModelVersion | None:
    """Load the demo stores and sales into an empty database and train on them; returns the
    active version, or None (and loads nothing) when the database has stores already.
    ``progress`` is told how many sales each chunk wrote."""
    with db.session() as session:
        if session.scalar(select(func.count()).select_from(Store)):
            return None
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    with db.session(write=True) as session:
        store_ids = [stores.create_store(session, name)[0].id for name in DEMO_STORES]
    per_store = n_sales // len(DEMO_STORES)
    for store_id in store_ids:
        for start in range(0, per_store, CHUNK):
            rows = demo_sales(rng, min(CHUNK, per_store - start), now)
            with db.session(write=True) as session:
                sales.record_sales(
                    session,
                    Caller("admin"),
                    [SaleRecord(c, to_cents(p), store_id, t) for c, p, t in rows],
                )
            progress(len(rows))
    lease = timedelta(seconds=settings.TRAINING_LEASE_SECONDS)
    active, _ = training.train(db, TrainRequest(), lease)
    training.train(db, PLAIN_RUN, lease)
    return active
