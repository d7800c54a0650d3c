"""ASGI middleware: request ids, metrics, access logs and the request body size limit."""

import logging
import os
import re
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import (
    BodyTooLarge,
    NotImplementedCoding,
    UnsupportedVersion,
    as_app_error,
    error_response,
)
from app.logs import request_id
from app.metrics import UNMATCHED_ROUTE, Metrics, method_label

log = logging.getLogger("app.access")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body: int, max_upload: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = declared = ""
        coding = None
        for name, value in scope["headers"]:  # ASGI servers give names in lower case
            if name == b"x-request-id":
                given = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
            elif name == b"transfer-encoding":  # codings may come in several headers
                coding = value if coding is None else coding + b"," + value
        rid = given if _SAFE_REQUEST_ID.match(given) else os.urandom(16).hex()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        limit = self.max_upload if scope["path"].endswith("/import") else self.max_body

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if (refused := _unsupported(scope, coding)) is not None:
                await _answer(scope, receive, send_with_id, refused)
                return
            if declared.isdigit() and int(declared) > limit:
                await _answer(scope, receive, send_with_id, BodyTooLarge(limit))
                return
            await self.app(scope, _limited(receive, limit), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path_format", None) or UNMATCHED_ROUTE
            method = scope["method"]
            self.metrics.count_request(method_label(method), template, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "fields": {
                            "method": method,
                            "route": template,
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                        }
                    },
                )
            request_id.reset(token)


def _limited(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive, so a body without Content-Length is stopped too."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


def _unsupported(scope: Scope, coding: bytes | None) -> Exception | None:
    """A request in a framing the service does not speak, which the HTTP parser lets through:
    another version of HTTP than 1.0 and 1.1 (a request line saying HTTP/2.0, or none), or a
    transfer coding other than chunked (whose body would be read still encoded)."""
    if scope["http_version"] not in ("1.0", "1.1"):
        return UnsupportedVersion(
            f"HTTP/{scope['http_version']} is not supported: send HTTP/1.1",
            headers={"Connection": "close"},
        )
    if coding is not None and coding.strip().lower() != b"chunked":
        return NotImplementedCoding(
            "the only Transfer-Encoding taken is chunked", headers={"Connection": "close"}
        )
    return None


async def _answer(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
    """Answer with the error before reading the body (closing the connection rather than
    reading, or discarding, what the client goes on sending)."""
    response = error_response(as_app_error(Request(scope), error))
    await response(scope, receive, send)
