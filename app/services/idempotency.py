"""Idempotency-Key handling: a retried write replays the first answer and stores nothing new.

The key row is written first, in the same transaction as the write it guards, so the
acknowledgement and the key commit together or not at all. On PostgreSQL a request whose key
is held by another request still in flight gets 409 (a transaction-scoped advisory lock on the
key says so); on SQLite writers are serialised, so the second waits and then replays.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import backend
from app.errors import Conflict, InvalidInput
from app.orm import IdempotencyKey, utcnow


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: str


def fingerprint(canonical_body: str) -> str:
    return hashlib.sha256(canonical_body.encode()).hexdigest()


def claim(
    session: Session, scope: str, key: str, request_hash: str, ttl: timedelta
) -> Replay | IdempotencyKey:
    """Return the stored answer for this key, or a fresh claim to complete with `complete`."""
    if backend(session) == "postgresql":
        lock = func.pg_try_advisory_xact_lock(func.hashtextextended(f"{scope}\x1f{key}", 0))
        if not session.scalar(select(lock)):
            raise Conflict(
                "a request with this Idempotency-Key is in flight; retry",
                headers={"Retry-After": "1"},
            )
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at < utcnow() - ttl,
        )
    )
    row = IdempotencyKey(
        scope=scope, key=key, request_hash=request_hash, status_code=0, response_body=""
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        )
        if existing is None:  # the other request rolled back between our insert and this read
            raise Conflict("a request with this Idempotency-Key is in flight; retry") from None
        return _replay(existing, request_hash)
    return row


def _replay(existing: IdempotencyKey, request_hash: str) -> Replay:
    if existing.request_hash != request_hash:
        raise InvalidInput.at(
            ["header", "Idempotency-Key"],
            "this key was already used with a different request body",
            "idempotency_key_reused",
        )
    if existing.status_code == 0:
        raise Conflict("a request with this Idempotency-Key is in flight; retry")
    return Replay(existing.status_code, existing.response_body)


def complete(session: Session, claimed: IdempotencyKey, status_code: int, body: str) -> None:
    claimed.status_code = status_code
    claimed.response_body = body
    session.flush()
