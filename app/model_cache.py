"""The active model as each worker serves it: cached in the process, re-checked against the
database's active pointer at most once per refresh interval, never per prediction."""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

from fastapi.concurrency import run_in_threadpool

from app.db import Database
from app.orm import ModelVersion
from app.services import registry
from models import RingPriceRegressor
from models.report import QuoteLine


@dataclass(frozen=True)
class ServingModel:
    version: int
    trained_at: datetime
    n_samples: int
    regressor: RingPriceRegressor
    # Quotes at the level of the fit's own intervals (the core's default, 95%).
    line: QuoteLine


class ActiveModelCache:
    def __init__(self, db: Database, refresh_seconds: float) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        self._model: ServingModel | None = None
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> ServingModel | None:
        if time.monotonic() - self._checked_at < self._refresh_seconds:
            return self._model
        async with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            if time.monotonic() - self._checked_at >= self._refresh_seconds:
                self._model = await run_in_threadpool(self._load)
                self._checked_at = time.monotonic()
        return self._model

    def invalidate(self) -> None:
        """Make the next request re-read the pointer (after this process changed it)."""
        self._checked_at = float("-inf")

    def _load(self) -> ServingModel | None:
        with self._db.session() as session:
            version = registry.active_version(session)
            if version is None:
                return None
            if self._model is not None and self._model.version == version:
                return self._model
            row = session.get(ModelVersion, version)
            assert row is not None  # the pointer is a foreign key
            regressor = RingPriceRegressor.from_dict(row.estimator)
            return ServingModel(
                version=row.version,
                trained_at=row.created_at,
                n_samples=row.n_samples,
                regressor=regressor,
                line=regressor.quote_line(regressor.report_.level),
            )
