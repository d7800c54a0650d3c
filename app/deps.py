"""Dependencies that routes declare: sessions, settings and who is calling."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database, backend, begin_writing
from app.errors import Forbidden, InvalidInput, TooManyRequests
from app.fields import IntegerText
from app.live import LiveAccuracyTracker
from app.metrics import Metrics
from app.model_cache import ActiveModelCache
from app.security import Caller
from app.services.auth import authenticate, presented_key


# Plain lookups are async: FastAPI runs a sync dependency in the thread pool, a thread hop
# per dependency per request.
async def get_database(request: Request) -> Database:
    return request.app.state.db


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_model_cache(request: Request) -> ActiveModelCache:
    return request.app.state.model_cache


async def get_live(request: Request) -> LiveAccuracyTracker:
    return request.app.state.live


async def get_quote_slots(request: Request) -> asyncio.Semaphore:
    return request.app.state.quote_slots


DatabaseDep = Annotated[Database, Depends(get_database)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelCacheDep = Annotated[ActiveModelCache, Depends(get_model_cache)]
LiveDep = Annotated[LiveAccuracyTracker, Depends(get_live)]
# Big quote requests this process writes at once (app/main.py sets how many).
QuoteSlotsDep = Annotated[asyncio.Semaphore, Depends(get_quote_slots)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


class Turns:
    """How many requests of this process may hold a database session at once, and how many
    may write. The others wait for their turn on the event loop, where waiting costs nothing:
    waiting in the thread pool instead, 40 threads blocked on SQLite's write lock (or on the
    last pooled PostgreSQL connection) left none for the request that held it, and bursts
    of a hundred requests got 503s and 500s."""

    # Connections left to what is not a request's session: the model and live caches'
    # refreshes, housekeeping, the group commit's writer, a training's lease and snapshot.
    RESERVED = 4

    def __init__(self, db: Database) -> None:
        self.sessions = asyncio.Semaphore(max(1, db.capacity - self.RESERVED))
        # SQLite has one writer at a time anyway; PostgreSQL locks rows, not the database.
        self.writers = asyncio.Semaphore(1) if backend(db.engine) == "sqlite" else None


async def get_turns(request: Request) -> Turns:
    return request.app.state.turns


TurnsDep = Annotated[Turns, Depends(get_turns)]


async def _session_turn(turns: TurnsDep) -> AsyncIterator[None]:
    async with turns.sessions:
        yield


async def _write_turn(turns: TurnsDep) -> AsyncIterator[None]:
    if turns.writers is None:
        yield
        return
    async with turns.writers:
        yield


# scope="function", as the session's: the turn ends when the transaction does, not after
# the response has been sent.
SessionTurn = Annotated[None, Depends(_session_turn, scope="function")]
WriteTurn = Annotated[None, Depends(_write_turn, scope="function")]


def _request_session(_: SessionTurn, db: DatabaseDep) -> Iterator[Session]:
    with db.session() as session:
        yield session


# One session, one transaction per request: the key is checked in it, the services only
# flush in it, and it commits when the route returns, or rolls back when it raises.
# scope="function": the commit happens before the response is sent, so a client never holds
# an acknowledgement for a write that did not commit.
SessionDep = Annotated[Session, Depends(_request_session, scope="function")]


def _writes(_: WriteTurn, session: SessionDep) -> None:
    begin_writing(session)


# A route that writes says so with dependencies=[WRITES]: route dependencies run before its
# parameters, so the transaction begins as a writer before the key is checked in it. The
# write turn comes before the session's turn, always in that order, so that no writer holds
# a session turn while it waits to write.
WRITES = Depends(_writes)

ApiKeyHeader = Annotated[
    str | None, Header(alias="X-API-Key", description="An admin or store API key.")
]


def require_key(
    session: SessionDep, settings: SettingsDep, x_api_key: ApiKeyHeader = None
) -> Caller:
    return authenticate(session, settings, x_api_key)


async def _presented_key(x_api_key: ApiKeyHeader = None) -> str:
    return presented_key(x_api_key)


# For a route that checks the key itself, in a transaction of its choosing: a request without
# one is refused before anything else.
PresentedKey = Annotated[str, Depends(_presented_key)]


def require_admin(caller: Annotated[Caller, Depends(require_key)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("this needs the admin key")
    return caller


CallerDep = Annotated[Caller, Depends(require_key)]
AdminDep = Annotated[Caller, Depends(require_admin)]
# Routers whose reads are public unless JEWELRY_PUBLIC_READS is false take this as a router
# dependency then (app/main.py), so that the public quote path opens no session at all.
KEY_FOR_READS = Depends(require_key)


class ImportSlots:
    """The CSV imports this process runs at once, and how many it may. Only the event loop
    takes and frees slots, so there is no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0


# Imports take seconds to minutes; retrying every second would only add load.
IMPORT_RETRY_AFTER_SECONDS = 5


async def import_slot(
    request: Request, caller: CallerDep, metrics: MetricsDep
) -> AsyncIterator[Caller]:
    """The caller, holding one of the process's import slots until the import ends: taken once
    the key is known good and before the body is read, so that an unknown caller or one over
    the cap never makes the service spool a file."""
    slots: ImportSlots = request.app.state.import_slots
    if slots.running >= slots.limit:
        raise TooManyRequests(
            f"{slots.running} CSV imports are running, as many as this worker takes at once; "
            f"retry in {IMPORT_RETRY_AFTER_SECONDS} seconds",
            retry_after=IMPORT_RETRY_AFTER_SECONDS,
        )
    slots.running += 1
    metrics.imports_running.set(slots.running)
    try:
        yield caller
    finally:
        slots.running -= 1
        metrics.imports_running.set(slots.running)


# scope="function": the slot is free again before the response is sent.
ImportCaller = Annotated[Caller, Depends(import_slot, scope="function")]


DEFAULT_PAGE_SIZE = 100


def page_limit(
    settings: SettingsDep,
    limit: Annotated[
        int | None,
        Query(ge=1, description="Items per page (default 100), at most the maximum."),
        IntegerText,
    ] = None,
) -> int:
    """The page size asked for, within JEWELRY_MAX_PAGE_SIZE (which the OpenAPI schema
    states as the maximum: see app/main.py)."""
    if limit is None:
        return min(DEFAULT_PAGE_SIZE, settings.MAX_PAGE_SIZE)
    if limit > settings.MAX_PAGE_SIZE:
        raise InvalidInput.at(
            ["query", "limit"],
            f"Input should be less than or equal to {settings.MAX_PAGE_SIZE}",
            "less_than_equal",
        )
    return limit


PageLimit = Annotated[int, Depends(page_limit)]
