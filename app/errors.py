"""One error type for everything a client can cause, and the handlers that render errors.

Every 422 is FastAPI's shape, ``{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}``,
with ``loc`` starting at body, query, path or header (or ``["file", line, column]`` for a CSV
upload); every other error is ``{"detail": "message"}``.
"""

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

log = logging.getLogger("app.errors")

Loc = Sequence[str | int]


class AppError(Exception):
    """An error whose message is safe to show: rendered as ``{"detail": message}``."""

    status_code = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail: Any = detail
        self.headers = headers


class Unauthorized(AppError):
    status_code = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class RequestTimeout(AppError):
    status_code = 408


class UnsupportedMediaType(AppError):
    status_code = 415


class NotImplementedCoding(AppError):
    """A transfer coding the server does not know (RFC 9112 6.1: 501)."""

    status_code = 501


class UnsupportedVersion(AppError):
    status_code = 505


class Unavailable(AppError):
    """The service cannot take this now; the client may retry after ``retry_after`` seconds."""

    status_code = 503

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class TooManyRequests(Unavailable):
    status_code = 429


def error_item(loc: Loc, msg: str, type_: str = "value_error") -> dict[str, Any]:
    """One entry of a 422's ``detail`` list."""
    return {"loc": list(loc), "msg": msg, "type": type_}


class InvalidInput(AppError):
    """A 422 for rules checked in code, in the same shape as pydantic's validation errors."""

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
        self.detail = errors

    @classmethod
    def at(cls, loc: Loc, msg: str, type_: str = "value_error") -> "InvalidInput":
        return cls([error_item(loc, msg, type_)])


def too_long(loc: Loc, limit: int, got: int) -> InvalidInput:
    """A list over a size limit, worded as pydantic words its own ``max_length``."""
    return InvalidInput.at(
        loc, f"List should have at most {limit} items after validation, not {got}", "too_long"
    )


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods of every operation whose path template matches, from the OpenAPI schema."""
    table = getattr(app.state, "method_table", None)
    if table is None:
        table = []
        for template, operations in app.openapi()["paths"].items():
            numeric = {
                param["name"]
                for operation in operations.values()
                for param in operation.get("parameters", [])
                if param["in"] == "path" and param.get("schema", {}).get("type") == "integer"
            }
            pattern = re.escape(template)
            for name in re.findall(r"\{(\w+)\}", template):
                pattern = pattern.replace(
                    re.escape("{" + name + "}"), "[0-9]+" if name in numeric else "[^/]+"
                )
            table.append((re.compile(f"^{pattern}$"), {m.upper() for m in operations}))
        app.state.method_table = table
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


class BodyTooLarge(HTTPException):
    """A request body over its limit. An HTTPException rather than an AppError because the
    limit is enforced while FastAPI reads the body, and FastAPI lets only those through."""

    def __init__(self, limit: int) -> None:
        # The rest of the body may be endless: close rather than read it to reach the next
        # request on the connection.
        super().__init__(
            413, f"request body larger than {limit} bytes", headers={"Connection": "close"}
        )


# SQLite's result codes (the low byte) for a lock another connection holds; PostgreSQL's
# SQLSTATEs for a lock, a statement timeout, a serialisation failure and a deadlock.
SQLITE_BUSY_CODES = frozenset({5, 6})
_POSTGRES_BUSY = {"55P03", "57014", "40001", "40P01"}


def _busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_BUSY_CODES
    return getattr(exc.orig, "sqlstate", None) in _POSTGRES_BUSY


def as_app_error(request: Request, exc: Exception) -> AppError:
    """Every error the service answers with, as the AppError that says it."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, RequestValidationError):
        # Echoing the offending input back could be huge or hold a secret: name the place.
        return InvalidInput(
            [
                error_item(e.get("loc", ()), e.get("msg", ""), e.get("type", "value_error"))
                for e in exc.errors()
            ]
        )
    if isinstance(exc, PoolTimeout):
        # Every pooled connection stayed in use for the pool's timeout.
        log.warning("no database connection free on %s", request.url.path)
        return Unavailable("the service is busy: every database connection is in use; retry")
    if isinstance(exc, OperationalError):
        # A lock wait that ran out or a database that went away: the client may retry.
        log.warning("database unavailable on %s: %s", request.url.path, exc.orig)
        if _busy(exc):
            return Unavailable("the database is busy with other writes; retry shortly")
        return Unavailable("the database is unavailable; retry shortly")
    assert isinstance(exc, HTTPException)  # routing's 404 and 405, body parsing's 400 and 413
    error = AppError(str(exc.detail), headers=dict(exc.headers or {}))
    error.status_code = exc.status_code
    if exc.status_code == 405 and error.headers is not None:
        # Name every method the path has, not only those of the first route matched; the
        # page and its files are not in the schema, and keep what their route said.
        said = [m.strip() for m in error.headers.get("Allow", "").split(",") if m.strip()]
        allowed = _allowed_methods(request.app, request.url.path) or sorted(said)
        error.headers["Allow"] = ", ".join(allowed)
    return error


def error_response(error: AppError) -> JSONResponse:
    return JSONResponse(
        {"detail": error.detail}, status_code=error.status_code, headers=error.headers
    )


async def _render(request: Request, exc: Exception) -> JSONResponse:
    return error_response(as_app_error(request, exc))


def install_error_handlers(app: FastAPI) -> None:
    """One handler renders every error; FastAPI asks for it once per exception type."""
    for kind in (AppError, HTTPException, RequestValidationError, OperationalError, PoolTimeout):
        app.add_exception_handler(kind, _render)
