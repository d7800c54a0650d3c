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
        cutoff = now - age
        batch = select(key).where(made_at < cutoff).limit(PURGE_BATCH).scalar_subquery()
        # The age again on the row deleted: on PostgreSQL a row claimed afresh while the
        # DELETE waited for its lock is checked again as it now is, by this condition only
        # (the subquery keeps what it read), and must stay.
        deleting = delete(key.class_).where(key.in_(batch), made_at < cutoff)
        purged += rows_changed(session.execute(deleting))
    return purged
