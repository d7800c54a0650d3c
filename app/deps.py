"""Dependencies that routes declare: sessions, settings and who is calling."""

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import Database
from app.errors import Forbidden, InvalidInput, TooManyRequests, Unauthorized
from app.live import LiveAccuracyTracker
from app.metrics import Metrics
from app.model_cache import ActiveModelCache
from app.security import MAX_KEY_LENGTH, Caller
from app.services.auth import identify


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


DatabaseDep = Annotated[Database, Depends(get_database)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelCacheDep = Annotated[ActiveModelCache, Depends(get_model_cache)]
LiveDep = Annotated[LiveAccuracyTracker, Depends(get_live)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _read_session(db: DatabaseDep) -> Iterator[Session]:
    with db.session() as session:
        yield session


def _write_session(db: DatabaseDep) -> Iterator[Session]:
    with db.session(write=True) as session:
        yield session


# scope="function": the transaction commits before the response is sent, so a client never
# holds an acknowledgement for a write that did not commit.
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]

ApiKeyHeader = Annotated[
    str | None, Header(alias="X-API-Key", description="An admin or store API key.")
]


def _identify(db: Database, settings: Settings, key: str | None) -> Caller:
    if not key:
        raise Unauthorized("missing X-API-Key header")
    if len(key) > MAX_KEY_LENGTH:
        # No key is this long: a wrong key, not a malformed request.
        raise Unauthorized("unknown or revoked API key")
    with db.session() as session:
        caller = identify(session, settings, key)
    if caller is None:
        raise Unauthorized("unknown or revoked API key")
    return caller


def require_key(db: DatabaseDep, settings: SettingsDep, x_api_key: ApiKeyHeader = None) -> Caller:
    return _identify(db, settings, x_api_key)


def require_admin(caller: Annotated[Caller, Depends(require_key)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("this needs the admin key")
    return caller


async def require_reader(
    db: DatabaseDep, settings: SettingsDep, x_api_key: ApiKeyHeader = None
) -> Caller | None:
    """Public reads need no key unless JEWELRY_PUBLIC_READS is false.

    Async so that the public predict path never leaves the event loop.
    """
    if settings.PUBLIC_READS:
        return None
    return await run_in_threadpool(_identify, db, settings, x_api_key)


CallerDep = Annotated[Caller, Depends(require_key)]
AdminDep = Annotated[Caller, Depends(require_admin)]
ReaderDep = Annotated[Caller | None, Depends(require_reader)]


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
        int | None, Query(ge=1, description="Items per page (default 100), at most the maximum.")
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
