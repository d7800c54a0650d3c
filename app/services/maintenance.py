"""Housekeeping that keeps tables from growing without bound, a bounded batch per run."""

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.db import rows_changed
from app.orm import DeletedSale, IdempotencyKey, utcnow

# Rows each table loses per run at most: short write transactions, even after a long outage.
PURGE_BATCH = 1000


def purge_expired(
    session: Session, *, idempotency_ttl: timedelta, deleted_sales_keep: timedelta
) -> int:
    """Delete expired Idempotency-Keys and old deletion records; returns how many went."""
    now = utcnow()
    purged = 0
    for key, made_at, age in (
        (IdempotencyKey.id, IdempotencyKey.created_at, idempotency_ttl),
        (DeletedSale.seq, DeletedSale.deleted_at, deleted_sales_keep),
    ):
        batch = select(key).where(made_at < now - age).limit(PURGE_BATCH).scalar_subquery()
        purged += rows_changed(session.execute(delete(key.class_).where(key.in_(batch))))
    return purged
