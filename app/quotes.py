"""Quotes as the API writes them: one ring (GET /predict) or many (POST /predict), both from
the `QuoteLine` a worker keeps for the model it serves.

Many quotes are written column by column with numpy into a byte matrix, a row per quote: a
dict and three strings per quote cost ~3.5 us each, most of a 100,000-quote request. The
matrix has one width for all rows, so shorter numbers are padded with spaces outside the
strings: whitespace JSON allows between a name's colon and its value.
"""

from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from app.fields import MAX_QUOTE, money_text
from models.errors import NonFiniteDataError
from models.report import QuoteLine

_SPACE, _QUOTE, _MINUS, _POINT, _ZERO = (ord(c) for c in ' "-.0')
_Bytes = NDArray[np.uint8]


def _check_amounts(amounts: Any, what: str) -> None:
    """Refuse quotes past what an amount may be (the training refuses such fits; a version
    stored before it did may still quote them)."""
    if not np.all(np.abs(amounts) <= MAX_QUOTE):  # also false for nan
        raise _too_large(what)


def _too_large(what: str) -> NonFiniteDataError:
    return NonFiniteDataError(f"carats are too large to price: the {what} overflows")


def quote(line: QuoteLine, carats: float) -> dict[str, Any]:
    """One quote in the shape of `Prediction`."""
    # Plain float arithmetic: an overflow is inf (nan past it), never an exception.
    price = line.price(carats)
    if not abs(price) <= MAX_QUOTE:
        raise _too_large("prediction")
    interval = None
    if line.scale is not None:
        low, high = line.bounds(carats)
        if not (abs(low) <= MAX_QUOTE and abs(high) <= MAX_QUOTE):
            raise _too_large("interval")
        interval = {"level": line.level, "lower": money_text(low), "upper": money_text(high)}
    return {"carats": carats, "price": money_text(price), "interval": interval}


def one_quote_json(line: QuoteLine, version: int, carats: float) -> bytes:
    """The body of GET /predict (`SinglePrediction`)."""
    return orjson.dumps({**quote(line, carats), "model_version": version})


def many_quotes_json(line: QuoteLine, version: int, carats: NDArray[np.float64]) -> bytes:
    """The body of POST /predict (`Predictions`): the same quotes as `quote`, written at once."""
    with np.errstate(over="ignore", invalid="ignore"):
        prices = line.price(carats)
        bounds = None if line.scale is None else line.bounds(carats)
    _check_amounts(prices, "prediction")
    parts: list[bytes | list[_Bytes]] = [b'{"carats":', _number_column(carats), b',"price":']
    parts.append(_money_column(prices))
    if bounds is None:
        parts.append(b',"interval":null},')
    else:
        low, high = bounds
        _check_amounts(bounds, "interval")
        level = orjson.dumps(line.level)
        parts += [b',"interval":{"level":' + level + b',"lower":', _money_column(low)]
        parts += [b',"upper":', _money_column(high), b"}},"]
    rows = _rows(parts, len(carats))
    rows[-1, -1] = ord("]")  # the last quote's comma closes the list instead
    return b"".join((b'{"model_version":%d,"predictions":[' % version, rows.data, b"}"))


def cents(dollars: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each amount in whole cents, rounded as `money_text` rounds it.

    ``dollars * 100`` is itself rounded: where it lands within a few units in the last place
    of a half cent, the nearest cent depends on the digits it lost, and Python's formatting
    (which rounds the exact binary value) decides for those few.
    """
    scaled = dollars * 100.0
    whole = np.rint(scaled).astype(np.int64)
    margin = 4.0 * np.spacing(np.abs(scaled))
    for i in np.flatnonzero(np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) <= margin):
        whole[i] = int(money_text(float(dollars[i])).replace(".", ""))
    return whole


def _money_column(dollars: NDArray[np.float64]) -> list[_Bytes]:
    """``"123.45"`` per row, right-aligned: the digits of the cents as orjson writes them,
    with the point before the last two and zeros where there are fewer than three."""
    amount = cents(dollars)
    text, last, lengths = _json_numbers(np.abs(amount))
    # Left of the digits: the sign, if any, then the opening quote.
    negative = amount < 0
    signed = bool(negative.any())
    sign = np.where(negative, _MINUS, _QUOTE) if signed else _QUOTE
    count = np.maximum(lengths, 3)
    columns = [np.full(len(amount), _QUOTE, np.uint8)]
    for k in range(int(count.max()) + 1 + signed):  # the digit from the right, or past it
        digit = np.take(text, last - k, mode="wrap")
        if k < 3:
            columns.append(np.where(k < lengths, digit, _ZERO))
        else:
            lead = np.where(k == count, sign, _SPACE)
            if signed:
                lead = np.where((k == count + 1) & negative, _QUOTE, lead)
            columns.append(np.where(k < lengths, digit, lead))
        if k == 1:
            columns.append(np.full(len(amount), _POINT, np.uint8))
    return columns[::-1]


def _number_column(values: NDArray[Any]) -> list[_Bytes]:
    """Each number as JSON writes it (orjson's shortest round-trip form), right-aligned."""
    text, last, lengths = _json_numbers(values)
    return [
        np.where(k < lengths, np.take(text, last - k, mode="wrap"), _SPACE)
        for k in reversed(range(int(lengths.max())))
    ]


def _json_numbers(values: NDArray[Any]) -> tuple[_Bytes, NDArray[np.intp], NDArray[np.intp]]:
    """The JSON text of the numbers, where each one's last character is, and its length.
    (Reading k characters left of the last one past a number's start reads another number's
    text, or wraps around: the caller takes those only where k is past the length.)"""
    text = np.frombuffer(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    # "[a,b,c]": a number ends where a comma or the closing bracket is.
    ends = np.flatnonzero((text == ord(",")) | (text == ord("]")))
    starts = np.concatenate(([1], ends[:-1] + 1))
    return text, ends - 1, ends - starts


def _rows(parts: list[bytes | list[_Bytes]], n: int) -> _Bytes:
    """One row per quote: the constant parts repeated, the columns as they are. Written a
    column at a time into a matrix of columns, then turned once: writing columns straight
    into rows is a strided write per byte."""
    width = sum(len(part) for part in parts)
    matrix = np.empty((width, n), np.uint8)
    at = 0
    for part in parts:
        if isinstance(part, bytes):
            matrix[at : at + len(part)] = np.frombuffer(part, np.uint8)[:, None]
        else:
            for column in part:
                matrix[at] = column
                at += 1
            continue
        at += len(part)
    return np.ascontiguousarray(matrix.T)
