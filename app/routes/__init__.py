"""HTTP routes, one module per resource."""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response, params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from app.errors import InvalidInput, UnsupportedMediaType

UNREADABLE_JSON = (UnicodeDecodeError, ValueError, RecursionError)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length.strip() != "0") or "transfer-encoding" in request.headers


class JsonRequest(Request):
    """A request whose JSON body brings numbers with a fraction or an exponent as Decimal:
    a price is then judged as the client wrote it, not as the float it rounds to. (Fields
    of floats take a Decimal as they take a float.)"""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class JsonRoute(APIRoute):
    """A route whose body, when it has one, must say it is JSON: anything else is a 415
    rather than a puzzling 422 about the shape of a form. Its body is read by JsonRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, params.Form):
            return handler

        async def json_only(request: Request) -> Response:
            if _has_body(request) and not _is_json(request.headers.get("content-type", "")):
                raise UnsupportedMediaType(
                    "the body must be JSON: send it with Content-Type: application/json"
                )
            try:
                return await handler(JsonRequest(request.scope, request.receive))
            except HTTPException as exc:
                # FastAPI answers a body json cannot read for other reasons than its syntax
                # (bad UTF-8, a number of thousands of digits, nesting past the recursion
                # limit) with a vague 400: it is a body that is not JSON like any other.
                if exc.status_code == 400 and isinstance(exc.__cause__, UNREADABLE_JSON):
                    raise InvalidInput.at(
                        ["body"], f"not valid JSON: {exc.__cause__}"[:200], "json_invalid"
                    ) from None
                raise

        return json_only
