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


class UnsupportedMediaType(AppError):
    status_code = 415


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


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Echoing the offending input back could be huge or hold a secret: name the place instead.
    return [
        error_item(error.get("loc", ()), error.get("msg", ""), error.get("type", "value_error"))
        for error in exc.errors()
    ]


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Name every method the path has, not only those of the first route matched; the
            # page and its files are not in the schema, and keep what their route said.
            allowed = _allowed_methods(request.app, request.url.path) or sorted(
                m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
            )
            headers["Allow"] = ", ".join(allowed)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        # A lock wait that ran out or a database that went away: the client may retry.
        log.warning("database unavailable on %s: %s", request.url.path, exc.orig)
        busy = "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower()
        detail = (
            "the database is busy with other writes; retry shortly"
            if busy
            else "the database is unavailable; retry shortly"
        )
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})
