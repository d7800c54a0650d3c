"""Idempotency-Key handling: a retried write replays the first answer and stores nothing new.

The key row is written first, in the same transaction as the write it guards, so the
acknowledgement and the key commit together or not at all. On PostgreSQL a request whose key
is held by another transaction still in flight gets 409 (a transaction-scoped advisory lock on
the key says so); on SQLite writers are serialised, so the second waits and then replays. Two
requests with one key in the same group commit (app/group_commit.py) share a transaction: the
second replays the first, and both are answered once it has committed.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import backend
from app.errors import Conflict, InvalidInput
from app.orm import IdempotencyKey, utcnow


@dataclass(frozen=True)
class Answer:
    """A write's response: its status, its JSON body, and whether it replays an earlier one."""

    status_code: int
    body: str
    replayed: bool = False


def once(
    session: Session,
    scope: str,
    key: str | None,
    request: BaseModel,
    ttl: timedelta,
    produce: Callable[[], BaseModel],
) -> Answer:
    """Run ``produce`` once per Idempotency-Key (or every time without one): the key commits
    with the write it guards, and the same key with the same validated body replays the
    first answer."""
    if key is None:
        return Answer(201, produce().model_dump_json())
    outcome = claim(session, scope, key, fingerprint(request), ttl)
    if isinstance(outcome, Answer):
        return outcome
    body = produce().model_dump_json()
    complete(outcome, 201, body)
    session.flush()
    return Answer(201, body)


def fingerprint(request: BaseModel) -> str:
    """What identifies a request under its key: its validated body, so that 10 and "10.00"
    are the same price."""
    canonical = type(request).__name__ + request.model_dump_json()
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(
    session: Session, scope: str, key: str, request_hash: str, ttl: timedelta
) -> Answer | IdempotencyKey:
    """Return the stored answer for this key, or a fresh claim to `complete` in the same
    transaction."""
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
        return replay(existing, request_hash)
    return row


def replay(existing: IdempotencyKey, request_hash: str) -> Answer:
    """The answer a request gets whose key ``existing`` holds: the first answer again, or an
    error when the bodies differ or the first has no answer yet."""
    if existing.request_hash != request_hash:
        raise InvalidInput.at(
            ["header", "Idempotency-Key"],
            "this key was already used with a different request body",
            "idempotency_key_reused",
        )
    if existing.status_code == 0:
        raise Conflict("a request with this Idempotency-Key is in flight; retry")
    return Answer(existing.status_code, existing.response_body, replayed=True)


def complete(claimed: IdempotencyKey, status_code: int, body: str) -> None:
    """Keep the answer with the claimed key; it is written at the session's next flush."""
    claimed.status_code = status_code
    claimed.response_body = body
