"""HTTP routes, one module per resource."""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

import orjson
from fastapi import Request, Response, params
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.errors import InvalidInput, UnsupportedMediaType
from app.fields import NUMBER_TOO_LONG


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length.strip() != "0") or "transfer-encoding" in request.headers


def _unreadable(exc: Exception) -> str:
    """What is wrong with a body json cannot read, and where, in a client's words."""
    if isinstance(exc, json.JSONDecodeError):
        if exc.msg.startswith("Invalid control character"):
            what = "control character in a string"
        else:  # "Expecting value", "Unterminated string starting at", "Extra data", ...
            what = exc.msg.removesuffix(" at")
            what = what[:1].lower() + what[1:]
        return f"{what} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, InvalidOperation):  # Decimal takes exponents of up to 18 digits
        return "number out of range (exponent too large)"
    return NUMBER_TOO_LONG  # the one other ValueError: int() refusing thousands of digits


# Every digit read as a zero: a run of 19 is where a number may be an integer past 64 bits,
# which orjson reads as a float and json as an int.
_DIGITS_AS_ZERO = bytes(ord("0") if ord("0") <= i <= ord("9") else i for i in range(256))
_LONG_DIGITS = b"0" * 19


class JsonRequest(Request):
    """A request whose json() says what is wrong with a body it cannot read."""

    # Numbers with a fraction or an exponent, as float() or Decimal() reads their literal.
    parse_float: Callable[[str], Any] = float

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = self._read(body)
        return self._json

    def _read(self, body: bytes) -> Any:
        """orjson reads JSON several times as fast as json (100,000 carats: 3 ms, not 12) and
        to the same values, but refuses more (NaN, integers past 64 bits, a BOM, other
        encodings, lone surrogates) and words its errors its own way: json reads those, so
        what a client is told, and what is read, stay json's. One band differs: nesting of
        about 980 to 1023 levels, which json refuses as too deep and orjson reads (for the
        body's model to refuse: no field nests that deep)."""
        if self.parse_float is float and _LONG_DIGITS not in body.translate(_DIGITS_AS_ZERO):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
        try:
            return json.loads(body, parse_float=self.parse_float)
        except (ValueError, RecursionError, InvalidOperation) as exc:
            # FastAPI passes this on as the cause of a 400, which JsonRoute unwraps.
            raise InvalidInput.at(
                ["body"], f"not valid JSON: {_unreadable(exc)}", "json_invalid"
            ) from None


class ExactJsonRequest(JsonRequest):
    """A request whose JSON numbers with a fraction or an exponent come as Decimal: a price
    is then judged as the client wrote it, not as the float it rounds to. (Fields of floats
    take a Decimal as they take a float.) Only bodies with a Decimal field pay for it: a
    Decimal takes three times as long as a float to read."""

    parse_float = Decimal


def _holds_decimal(annotation: Any) -> bool:
    """Whether a body of this type has a Decimal field, at any depth."""
    if annotation is Decimal:
        return True
    if stands_for := getattr(annotation, "validated_as", None):  # e.g. schemas.sales.ValidBatch
        return _holds_decimal(stands_for)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_holds_decimal(f.annotation) for f in annotation.model_fields.values())
    return any(_holds_decimal(arg) for arg in get_args(annotation))


class JsonRoute(APIRoute):
    """A route whose body, when it has one, must say it is JSON: anything else is a 415
    rather than a puzzling 422 about the shape of a form. Its body is read by JsonRequest,
    or ExactJsonRequest when the body has a Decimal field."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, params.Form):
            return handler
        reader = (
            ExactJsonRequest
            if _holds_decimal(self.body_field.field_info.annotation)
            else JsonRequest
        )

        async def json_only(request: Request) -> Response:
            if _has_body(request) and not is_json(request.headers.get("content-type", "")):
                raise UnsupportedMediaType(
                    "the body must be JSON: send it with Content-Type: application/json"
                )
            try:
                return await handler(reader(request.scope, request.receive))
            except HTTPException as exc:
                # FastAPI answers any error of json() but a JSONDecodeError with a vague 400.
                if exc.status_code == 400 and isinstance(exc.__cause__, InvalidInput):
                    raise exc.__cause__ from None
                raise

        return json_only
