"""The ASGI application: ``app.main:app``, or a fresh one from ``create_app()``."""

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from app import migrate
from app.config import Settings
from app.db import Database
from app.deps import KEY_FOR_READS, ImportSlots, Turns
from app.errors import install_error_handlers
from app.group_commit import GroupCommit
from app.live import LiveAccuracyTracker
from app.logs import configure_logging
from app.metrics import Metrics
from app.middleware import ServiceMiddleware
from app.model_cache import ActiveModelCache
from app.routes import health, operations, pricing, registry, sales, stores, training, web
from app.routes.sales import SaleWriter
from app.schemas.common import ERROR_RESPONSES
from app.services.auth import ensure_admin_key
from app.services.maintenance import purge_expired
from app.services.sales import record_single_sales
from app.shortcuts import QuoteShortcut, SaleShortcut

log = logging.getLogger("app")


def announce_admin_key(key: str) -> None:
    """Show a newly generated admin key once, on stdout, outside the structured log."""
    print(
        f"\nGenerated the admin API key (shown only now; only its hash is stored):\n  {key}\n"
        "Rotate it with: jewelry-forecast rotate-admin-key\n",
        file=sys.stdout,
        flush=True,
    )


def prepare_database(db: Database, settings: Settings) -> str | None:
    """Bring the schema to head and make sure an admin key exists; returns a new key."""
    migrate.upgrade(db.engine)
    with db.session(write=True) as session:
        migrate.serialise_startup(session.connection())
        return ensure_admin_key(session, settings)


def housekeeping(db: Database, settings: Settings) -> None:
    with db.session(write=True) as session:
        purged = purge_expired(
            session,
            idempotency_ttl=timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS),
            deleted_sales_keep=timedelta(hours=settings.DELETED_SALES_KEEP_HOURS),
        )
    if purged:
        log.info("purged expired rows", extra={"fields": {"rows": purged}})


async def _housekeeping_loop(db: Database, settings: Settings) -> None:
    while True:
        try:
            await run_in_threadpool(housekeeping, db, settings)
        except Exception:  # a busy or unreachable database: the next round tries again
            log.warning("housekeeping failed", exc_info=True)
        await asyncio.sleep(settings.MAINTENANCE_SECONDS)


def _state_limits_in_openapi(app: FastAPI, settings: Settings) -> None:
    """The size limits are settings, checked in code; the schema states them as well."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # FastAPI keeps it in app.openapi_schema
            components = schema["components"]["schemas"]
            components["SaleBatch"]["properties"]["records"]["maxItems"] = (
                settings.MAX_BATCH_RECORDS
            )
            components["PredictRequest"]["properties"]["carats"]["maxItems"] = (
                settings.MAX_PREDICT_CARATS
            )
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "limit" and parameter["in"] == "query":
                        for option in parameter["schema"].get("anyOf", [parameter["schema"]]):
                            if option.get("type") == "integer":
                                option["maximum"] = settings.MAX_PAGE_SIZE
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings)
    metrics = Metrics()
    sale_writer: SaleWriter = GroupCommit(
        db, lambda session, singles: record_single_sales(session, settings, singles)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.LOG_LEVEL, settings.LOG_REPEAT_SECONDS)
        if settings.MIGRATE_ON_START:
            new_key = prepare_database(db, settings)
            if new_key is not None:
                announce_admin_key(new_key)
        log.info("ready", extra={"fields": {"database": db.engine.url.render_as_string()}})
        chores = asyncio.create_task(_housekeeping_loop(db, settings))
        yield
        chores.cancel()
        with suppress(asyncio.CancelledError):
            await chores
        await sale_writer.close()
        db.dispose()
        metrics.worker_stopped()

    app = FastAPI(
        title="Jewelry price forecasting service",
        summary="Learns the silver price and the gold price per carat from store sales.",
        version="0.1.0",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        # A redirect to the path without its slash would be built from the Host header.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.metrics = metrics
    app.state.sale_writer = sale_writer
    app.state.import_slots = ImportSlots(settings.MAX_CONCURRENT_IMPORTS)
    app.state.turns = Turns(db)
    app.state.quote_slots = asyncio.Semaphore(2)  # big quote requests written at once
    app.state.model_cache = ActiveModelCache(db, settings.MODEL_REFRESH_SECONDS)
    app.state.live = LiveAccuracyTracker(
        db, settings.MODEL_REFRESH_SECONDS, settings.DELETED_SALES_KEEP_HOURS * 3600
    )
    _state_limits_in_openapi(app, settings)
    install_error_handlers(app)
    # Inside ServiceMiddleware: shortcut answers get request ids, metrics and logs too.
    app.add_middleware(SaleShortcut, writer=sale_writer, metrics=metrics)
    if settings.PUBLIC_READS:
        app.add_middleware(QuoteShortcut, cache=app.state.model_cache, metrics=metrics)
    app.add_middleware(
        ServiceMiddleware,
        metrics=metrics,
        max_body=settings.MAX_BODY_BYTES,
        max_upload=settings.MAX_UPLOAD_BYTES,
    )
    for module in (health, stores, sales, training, operations, web):
        app.include_router(module.router)
    reads = [] if settings.PUBLIC_READS else [KEY_FOR_READS]
    for module in (registry, pricing):
        app.include_router(module.router, dependencies=reads)
    return app


def __getattr__(name: str) -> FastAPI:
    """``app.main:app``, built from the environment on first use: importing this module
    builds nothing, opens nothing and configures no logging."""
    if name != "app":
        raise AttributeError(name)
    built: FastAPI = create_app()
    globals()["app"] = built
    return built
