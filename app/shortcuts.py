"""The hot paths' shortcuts: requests written the usual way, answered before FastAPI's routing,
dependency resolution and validation, which cost more than the work itself (a quote, or
handing a sale to the writer).

Each takes only what its route would answer the same way, from the same code: anything else
(another parameter or header, a body the fast reading does not take, an error the route has
to judge) goes on to the route, which answers it, errors included.
"""

import json
import re
from collections.abc import Callable
from contextlib import suppress
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import AppError, as_app_error, error_response
from app.fields import MAX_CARATS, MIN_CARATS
from app.metrics import Metrics
from app.model_cache import ActiveModelCache
from app.quotes import one_quote_json
from app.routes import is_json, pricing, sales
from app.routes.sales import SaleWriter, record_single
from app.schemas.sales import fast_record
from app.services.sales import SingleSale
from models.errors import NonFiniteDataError


def _route(router: APIRouter, endpoint: Callable[..., Any]) -> APIRoute:
    return next(
        route
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint is endpoint
    )


# The plain, valid query of a quote: one parameter, carats, a decimal number without escapes,
# sign or exponent. Anything else goes to the route.
_PLAIN_QUOTE = re.compile(rb"carats=((?:0|[1-9][0-9]{0,4})(?:\.[0-9]{1,15})?)")


def plain_carats(query_string: bytes) -> float | None:
    """The carats of a query the route would accept as they are, else None."""
    match = _PLAIN_QUOTE.fullmatch(query_string)
    if match is None:
        return None
    carats = float(match[1])
    return carats if MIN_CARATS <= carats <= MAX_CARATS else None


class QuoteShortcut:
    """GET /api/v1/predict with a plain query. Not when reads need a key, nor without an
    active model: the route answers those."""

    def __init__(self, app: ASGIApp, *, cache: ActiveModelCache, metrics: Metrics) -> None:
        self.app = app
        self.cache = cache
        self.metrics = metrics
        self.route = _route(pricing.router, pricing.predict_one)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model, carats = None, None
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == self.route.path
            and (carats := plain_carats(scope["query_string"])) is not None
        ):
            # A database that cannot say which model is active: the route answers that, as
            # every error, through the app's handlers.
            with suppress(SQLAlchemyError):
                model = await self.cache.get()
        content = None
        if model is not None and carats is not None:
            # A quote past what an amount may be: the route answers it too.
            with suppress(NonFiniteDataError):
                content = one_quote_json(model.line, model.version, carats)
        if model is None or carats is None or content is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # what the metrics and the access log name
        headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        self.metrics.predictions.inc()


# A sale is a few dozen bytes: a longer body is the route's to read.
_SALE_BODY_BYTES = 4096
# The headers the sale route reads, or whose presence changes how it reads the body.
_SALE_HEADERS = frozenset(
    (b"content-type", b"content-length", b"transfer-encoding", b"x-api-key", b"idempotency-key")
)
# What the route's Idempotency-Key header takes (sales.IdempotencyKeyHeader).
_IDEMPOTENCY_KEY = re.compile(
    f"{sales.IDEMPOTENCY_KEY_CHARACTER}{{1,{sales.IDEMPOTENCY_KEY_LENGTH}}}"
)


def _sale_headers(scope: Scope) -> dict[bytes, str] | None:
    """The headers that matter to a sale, or None when one of them comes twice (the route
    would read the first; which one a client meant is not for a shortcut to guess)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:  # ASGI servers give names in lower case
        if name in _SALE_HEADERS:
            if name in found:
                return None
            found[name] = value.decode("latin-1")  # as Starlette reads them
    return found


def _plain_sale(headers: dict[bytes, str]) -> tuple[str, str | None] | None:
    """The API key and Idempotency-Key of a request the route would take as they are, with a
    short JSON body of a length given up front; else None."""
    key = headers.get(b"x-api-key")
    idempotency_key = headers.get(b"idempotency-key")
    length = headers.get(b"content-length", "")
    if (
        key
        and (idempotency_key is None or _IDEMPOTENCY_KEY.fullmatch(idempotency_key))
        and b"transfer-encoding" not in headers
        and length.isascii()
        and length.isdigit()
        and 0 < int(length) <= _SALE_BODY_BYTES
        and is_json(headers.get(b"content-type", ""))
    ):
        return key, idempotency_key
    return None


class SaleShortcut:
    """POST /api/v1/sales with an API key, a JSON body written the usual way (the batch's
    fast reading, app/schemas/sales.py) and perhaps an Idempotency-Key: the sale goes to the
    process's writer as the route would send it, and the writer's answer or error is the
    response. A request the shortcut does not take reaches the route with its body."""

    def __init__(self, app: ASGIApp, *, writer: SaleWriter, metrics: Metrics) -> None:
        self.app = app
        self.writer = writer
        self.metrics = metrics
        self.route = _route(sales.router, sales.create_sale)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == self.route.path
            and (headers := _sale_headers(scope)) is not None
            and (keys := _plain_sale(headers)) is not None
        ):
            await self.app(scope, receive, send)
            return
        received, body = await _read_body(receive)
        record = None
        if body is not None:
            # As the route reads a body with a price: numbers with a fraction as Decimal.
            with suppress(ValueError, RecursionError, InvalidOperation):
                record = fast_record(json.loads(body, parse_float=Decimal))
        if record is None:
            await self.app(scope, _replay(received, receive), send)
            return
        api_key, idempotency_key = keys
        scope["route"] = self.route  # what the metrics and the access log name
        try:
            response = await record_single(
                self.writer, self.metrics, SingleSale(api_key, record, idempotency_key)
            )
        except (AppError, OperationalError, PoolTimeout) as exc:  # what the app's handlers take
            response = error_response(as_app_error(Request(scope), exc))
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The messages received, and the whole body; None for a body cut short."""
    received: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":  # the client went away
            return received, None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return received, b"".join(chunks)


def _replay(received: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages already received again, then the rest."""
    pending = list(received)

    async def again() -> Message:
        return pending.pop(0) if pending else await receive()

    return again
