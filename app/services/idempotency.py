"""Idempotency-Key handling: a retried write replays the first answer and stores nothing new.

The key row is written first, in the same transaction as the write it guards, so the
acknowledgement and the key commit together or not at all. On PostgreSQL a request whose key
is held by another transaction still in flight gets 409 (a transaction-scoped advisory lock on
the key says so); on SQLite writers are serialised, so the second waits and then replays. Two
requests with one key in the same group commit (app/group_commit.py) share a transaction: the
second replays the first, and both are answered once it has committed.
"""

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Protocol

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from app.db import backend, placeholder
from app.errors import AppError, Conflict, InvalidInput
from app.orm import IdempotencyKey, utcnow

KEYS = IdempotencyKey.metadata.tables[IdempotencyKey.__tablename__]

# The claim and the answer's UPDATE are written out and run by exec_driver_sql (SQLAlchemy's
# error handling, without its compiler): every keyed single sale makes both, in the group
# commit's one turn at the database, and SQLAlchemy's rendering of a many-row INSERT ...
# RETURNING and its processing of each row took as long as the database's own work.
_COLUMNS = "scope, key, request_hash, status_code, response_body, created_at"


@cache
def _claim(rows: int, mark: str) -> str:
    """Claim ``rows`` keys: a new key, or an expired one claimed afresh; a live one is left
    alone, and not returned."""
    values = ", ".join(["(" + ", ".join([mark] * 6) + ")"] * rows)
    return (
        f"INSERT INTO {KEYS.name} ({_COLUMNS}) VALUES {values}"
        " ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded.request_hash,"
        " status_code = 0, response_body = '', created_at = excluded.created_at"
        f" WHERE {KEYS.name}.created_at < {mark} RETURNING id, scope, key"
    )


@cache
def _complete(mark: str) -> str:
    return f"UPDATE {KEYS.name} SET status_code = {mark}, response_body = {mark} WHERE id = {mark}"


@dataclass(frozen=True)
class Answer:
    """A write's response: its status, its JSON body, and whether it replays an earlier one."""

    status_code: int
    body: str
    replayed: bool = False


@dataclass(frozen=True)
class Wanted:
    """A request's Idempotency-Key, in the caller's scope, and its request's fingerprint."""

    scope: str
    key: str
    request_hash: str


@dataclass
class Claim:
    """A key this transaction wrote, to `complete` with the answer it guards."""

    id: int
    request_hash: str
    status_code: int = 0
    response_body: str = ""


class Held(Protocol):
    """A key with the answer it holds: a stored row, or a claim of this transaction."""

    @property
    def request_hash(self) -> str: ...
    @property
    def status_code(self) -> int: ...
    @property
    def response_body(self) -> str: ...


def once(
    session: Session,
    scope: str,
    key: str,
    request: BaseModel,
    ttl: timedelta,
    produce: Callable[[], str],
) -> Answer:
    """Run ``produce`` (which writes and returns its answer's JSON) once per Idempotency-Key:
    the key commits with the write it guards, and the same key with the same validated body
    replays the first answer."""
    [outcome] = claim_all(session, [Wanted(scope, key, fingerprint(request))], ttl)
    if isinstance(outcome, Exception):
        raise outcome
    if isinstance(outcome, Answer):
        return outcome
    body = produce()
    complete_all(session, [(outcome, 201, body)])
    return Answer(201, body)


def fingerprint(request: BaseModel) -> str:
    """What identifies a request under its key: its validated body, so that 10 and "10.00"
    are the same price."""
    canonical = type(request).__name__ + request.model_dump_json()
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_all(
    session: Session, wanted: Sequence[Wanted], ttl: timedelta
) -> list[Claim | Answer | AppError]:
    """Claim each key (no two the same), in a few statements whatever their number: a fresh
    claim, the stored answer to replay, or the error that request gets."""
    outcomes: dict[tuple[str, str], Claim | Answer | AppError] = {}
    free = list(wanted)
    if backend(session) == "postgresql":
        held = (
            session.connection()
            .execute(
                select(
                    *(
                        func.pg_try_advisory_xact_lock(advisory_lock_id(w.scope, w.key))
                        for w in wanted
                    )
                )
            )
            .one()
        )
        busy = Conflict(
            "a request with this Idempotency-Key is in flight; retry",
            headers={"Retry-After": "1"},
        )
        outcomes |= {(w.scope, w.key): busy for w, got in zip(wanted, held, strict=True) if not got}
        free = [w for w, got in zip(wanted, held, strict=True) if got]
    if not free:
        return [outcomes[w.scope, w.key] for w in wanted]
    now = utcnow()
    # The times as the column stores them (SQLite: text), converted once.
    stored_time = KEYS.c.created_at.type.bind_processor(session.get_bind().dialect)
    assert stored_time is not None
    created, expired_before = stored_time(now), stored_time(now - ttl)
    values = [v for w in free for v in (w.scope, w.key, w.request_hash, 0, "", created)]
    added = (
        session.connection()
        .exec_driver_sql(_claim(len(free), placeholder(session)), (*values, expired_before))
        .all()
    )
    claimed = {(scope, key): claim_id for claim_id, scope, key in added}
    taken = [w for w in free if (w.scope, w.key) not in claimed]
    stored = (
        {
            (row.scope, row.key): row
            for row in session.connection().execute(select(KEYS).where(_these(taken)))
        }
        if taken
        else {}
    )
    for w in free:
        if (claim_id := claimed.get((w.scope, w.key))) is not None:
            outcomes[w.scope, w.key] = Claim(claim_id, w.request_hash)
        elif (existing := stored.get((w.scope, w.key))) is None:
            # The request that held it rolled back between our insert and this read.
            outcomes[w.scope, w.key] = Conflict(
                "a request with this Idempotency-Key is in flight; retry"
            )
        else:
            try:
                outcomes[w.scope, w.key] = replay(existing, w.request_hash)
            except AppError as exc:
                outcomes[w.scope, w.key] = exc
    return [outcomes[w.scope, w.key] for w in wanted]


def advisory_lock_id(scope: str, key: str) -> int:
    """The advisory lock of a key on PostgreSQL: 64 bits of its SHA-256, which no client can
    steer onto another lock (training's, startup's, another caller's key), as it could the
    server's own hashtextextended, whose mixing runs backwards in seconds."""
    digest = hashlib.sha256(f"{scope}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _these(wanted: Sequence[Wanted]) -> ColumnElement[bool]:
    # An OR of pairs, not a row-value IN, which SQLite answers with a scan of the table.
    return or_(*(and_(KEYS.c.scope == w.scope, KEYS.c.key == w.key) for w in wanted))


def replay(existing: Held, request_hash: str) -> Answer:
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


def release(session: Session, claim_ids: Sequence[int]) -> None:
    """Give back keys claimed for requests that then failed: they store nothing."""
    if claim_ids:
        session.connection().execute(delete(KEYS).where(KEYS.c.id.in_(claim_ids)))


def complete_all(session: Session, answered: Sequence[tuple[Claim, int, str]]) -> None:
    """Keep each answer with the key claimed for it, in one statement."""
    for claim, status_code, body in answered:
        claim.status_code, claim.response_body = status_code, body
    if answered:
        session.connection().exec_driver_sql(
            _complete(placeholder(session)),
            [(c.status_code, c.response_body, c.id) for c, _, _ in answered],
        )
