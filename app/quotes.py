"""Quotes as the API writes them: one ring (GET /predict) or many (POST /predict), both from
the `QuoteLine` a worker keeps for the model it serves.

Many quotes are written as rows of one width, eight bytes at a time: a dict and three
strings per quote cost ~3.5 us each, and numpy writing rows a byte at a time still spent
~1 ns a byte. Each row starts from the same template (the names, punctuation and level),
and each number is ORed into the zero bytes left for it, right-aligned, as whole words: the
carats' taken from their text as orjson writes it, the amounts' digits worked out eight at a
time from their cents. Shorter numbers are padded with spaces outside the strings, which
JSON allows between a name's colon and its value. Words are little-endian (the first byte of
the text the lowest), as on every machine the service is built for.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from app.fields import MAX_QUOTE, money_text
from models.errors import NonFiniteDataError
from models.report import QuoteLine

_U = np.uint64
_Words = NDArray[_U]
_POWERS = [_U(10**k) for k in range(20)]
# A row under construction: a word that is the same in every row stays a scalar.
_Row = list[np.uint64 | _Words]


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


@dataclass(frozen=True)
class _Slot:
    """A column of values written right-aligned in ``width`` bytes: the words that end where
    the slot ends, with zeros left of the slot (so that they can be ORed into a row)."""

    words: list[_Words]
    width: int


def _slot(
    text: Callable[[int], list[_Words]],
    lengths: NDArray[np.intp],
    prefixes: tuple[bytes, ...] = (b"",),
    which: Any = 0,
) -> _Slot:
    """Values of ``lengths`` characters, each after its prefix ``prefixes[which]``,
    right-aligned and padded with spaces: ``text(count)`` gives each value's last ``count``
    words of text, which may start with other bytes (masked out here)."""
    width = int(np.max(lengths + np.array([len(p) for p in prefixes])[which]))
    keep, fill = _masks(width, prefixes)
    code = lengths * len(prefixes) + which
    words = [
        (taken & np.take(keep[i], code)) | np.take(fill[i], code)
        for i, taken in enumerate(text(_words(width)))
    ]
    return _Slot(words, width)


def _carats(values: NDArray[np.float64]) -> _Slot:
    """Carats as JSON writes them (orjson's shortest text that reads back the same)."""
    thousandths = np.rint(values * 1000.0)
    if np.all((thousandths / 1000.0 == values) & (values > 0.0) & (values < 1e4)):
        return _thousandths(thousandths.astype(np.uint64))
    return _numbers(values)


# The text after the whole carats of each number of thousandths: its point and decimals, but
# for the zeros they end with (one zero for none), right-aligned in a word; and its length.
_DECIMALS = [b".%s" % (b"%03d" % f).rstrip(b"0").ljust(1, b"0") for f in range(1000)]
_DECIMAL_WORDS = np.array([int.from_bytes(d.rjust(8, b"\0"), "little") for d in _DECIMALS], _U)
_DECIMAL_LENGTHS = np.array([len(d) for d in _DECIMALS], np.intp)


def _thousandths(counts: NDArray[np.uint64]) -> _Slot:
    """Numbers of thousandths under 10**7 (a word of text at most) as the shortest text of
    the float each is closest to: no other text of three decimals or fewer reads back as the
    same float (floats this size are far closer together than a thousandth), and a shorter
    text would have fewer decimals. Typical carats (a few digits, three decimals at most) are
    written so, without orjson."""
    whole = counts // _U(1000)
    part = counts - whole * _U(1000)
    decimals = np.take(_DECIMAL_LENGTHS, part)
    lengths = decimals + 1
    for power in _POWERS[1 : len(str(whole.max()))]:
        lengths += whole >= power
    # The whole's digits, moved left of the decimals, and the decimals put in.
    word = (_digits(whole) >> (decimals * 8).astype(_U)) | np.take(_DECIMAL_WORDS, part)
    return _slot(lambda count: [word], lengths)


@cache
def _masks(width: int, prefixes: tuple[bytes, ...]) -> tuple[_Words, _Words]:
    """For each word of a slot, and each length and prefix of a value (its code), what the
    word keeps of the value's text and what it adds: the prefix, and spaces left of it."""
    count = _words(width)
    codes = range((width + 1) * len(prefixes))
    keep, fill = (np.zeros((count, len(codes)), _U) for _ in range(2))
    for code in codes:
        length, prefix = divmod(code, len(prefixes))
        if length + len(prefixes[prefix]) > width:
            continue  # no value has it
        added = prefixes[prefix].rjust(width - length) + b"\0" * length
        keep[:, code] = np.frombuffer(b"\0" * (8 * count - length) + b"\xff" * length, "<u8")
        fill[:, code] = np.frombuffer(added.rjust(8 * count, b"\0"), "<u8")
    return keep, fill


def _numbers(values: NDArray[np.float64]) -> _Slot:
    """Numbers as JSON writes them (orjson's shortest text that reads back the same): the
    words are taken whole from the text of all of them, ending where each one's ends."""
    raw = np.frombuffer(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    # "[a,b,c]": a value ends where a comma is, the last where the closing bracket is.
    ends = np.append(np.flatnonzero(raw == ord(",")), len(raw) - 1)

    def text(count: int) -> list[_Words]:
        windows = _windows(raw, 8 * count)
        return [windows(ends - 8 * (count - i)) for i in range(count)]

    return _slot(text, ends - np.concatenate(([1], ends[:-1] + 1)))


def _windows(raw: NDArray[np.uint8], before: int) -> Callable[[NDArray[np.intp]], _Words]:
    """The eight bytes of ``raw`` from each of many positions (as far as ``before`` left of
    its start, where it reads zeros) as words: a gather from a copy of the text per offset
    within a word, several times faster than numpy's copy of a strided 8-byte window."""
    padded = np.concatenate((np.zeros(before, np.uint8), raw, np.zeros(16, np.uint8)))
    size = (len(padded) - 8) // 8
    shifted = np.empty((8, size), np.uint64)
    for offset in range(8):
        shifted[offset] = np.frombuffer(padded.data, "<u8", size, offset)
    flat = shifted.reshape(-1)

    def at(starts: NDArray[np.intp]) -> _Words:
        starts = starts + before
        return np.take(flat, (starts & 7) * size + (starts >> 3))

    return at


_CLOSE = _U(int.from_bytes(b'.\0\0"', "little"))
_ZEROS = _U(int.from_bytes(b"0" * 8, "little"))


def _money(dollars: NDArray[np.float64]) -> list[_Slot]:
    """Amounts as money text, ``"-12.34"``: the digits of the cents with a point before the
    last two, then a quote, and a quote and the sign left of the first (at least three)."""
    amount = cents(dollars)
    negative = amount < 0
    whole = np.abs(amount).astype(np.uint64)
    lengths = np.full(len(whole), 3, np.intp)
    for power in _POWERS[3 : len(str(whole.max()))]:
        lengths += whole >= power
    above = whole // _POWERS[8]
    last = _digits(whole - above * _POWERS[8])  # the last eight digits, the cents the last two

    def dollars_text(count: int) -> list[_Words]:
        # The digits but the cents, right-aligned: each word's digits moved up two bytes, the
        # two before them from the word before. A slot has at most 8 * count - 1 digits.
        groups, rest = [last], above
        for _ in range(count - 1):
            rest, group = np.divmod(rest, _POWERS[8])
            groups.append(_digits(group))
        # Typically all zeros (amounts under a million): its digits are then known.
        first = _digits(rest) if rest.any() else np.full(len(rest), _ZEROS)
        words = [first, *reversed(groups)]
        return [(word << _U(16)) | (before >> _U(48)) for before, word in pairwise(words)]

    return [
        _slot(dollars_text, lengths - 2, (b'"', b'"-'), negative.astype(np.intp)),
        _Slot([(_CLOSE | ((last >> _U(48)) << _U(8))) << _U(32)], 4),
    ]


def _digits(values: NDArray[np.uint64]) -> _Words:
    """Values under 10**8 as eight decimal digits, with leading zeros, a word each: split in
    halves of four digits, quarters of two and single digits, each step dividing every part
    of the word at once by a multiply and a shift (exact for these ranges)."""
    high = values // _U(10**4)
    halves = high | ((values - high * _U(10**4)) << _U(32))
    hundreds = ((halves * _U(10486)) >> _U(20)) & _U(0x0000007F0000007F)
    quarters = hundreds | ((halves - hundreds * _U(100)) << _U(16))
    tens = ((quarters * _U(103)) >> _U(10)) & _U(0x000F000F000F000F)
    return (tens | ((quarters - tens * _U(10)) << _U(8))) + _U(0x3030303030303030)


def _row(segments: list[bytes | _Slot]) -> _Row:
    """The words of a row of the segments in turn: the bytes the same in every row, the
    slots ORed in where they end. The row is padded to whole words with spaces before its
    last segment (its closing brackets)."""
    layout = bytearray()
    ends: list[tuple[int, _Slot]] = []
    for segment in segments[:-1]:
        if isinstance(segment, bytes):
            layout += segment
        else:
            layout += bytes(segment.width)
            ends.append((len(layout), segment))
    last = segments[-1]
    assert isinstance(last, bytes)
    layout += last.rjust(_words(len(layout) + len(last)) * 8 - len(layout))
    row: _Row = list(np.frombuffer(bytes(layout), np.uint64))
    for end, slot in ends:
        start = end - 8 * len(slot.words)
        shift = 8 * (start % 8)
        for i, word in enumerate(slot.words, start // 8):
            row[i] = row[i] | (word << _U(shift))
            if shift:
                row[i + 1] = row[i + 1] | (word >> _U(64 - shift))
    return row


def _words(size: int) -> int:
    return -(-size // 8)


# Rows written at a time: each number's columns (128 KB) stay in the cache between the steps
# that write it, which cuts the time of 100,000 quotes by a third. Each block of rows has its
# own width.
BLOCK = 16_384
# Fewer quotes than this are written one at a time: each takes ~3 us so, while writing them
# by words takes ~0.3 ms whatever their number.
FEW = 100


def many_quotes_json(line: QuoteLine, version: int, carats: NDArray[np.float64]) -> memoryview:
    """The body of POST /predict (`Predictions`): the same quotes as `quote`, written at once."""
    if len(carats) < FEW:
        quotes = [quote(line, c) for c in carats.tolist()]
        return memoryview(orjson.dumps({"model_version": version, "predictions": quotes}))
    with np.errstate(over="ignore", invalid="ignore"):
        prices = line.price(carats)
        bounds = None if line.scale is None else line.bounds(carats)
    _check_amounts(prices, "prediction")
    if bounds is None:
        tail = b',"interval":null},'
    else:
        _check_amounts(bounds, "interval")
        tail = b',"interval":{"level":' + orjson.dumps(line.level) + b',"lower":'

    def block(rows: slice) -> _Words:
        segments: list[bytes | _Slot] = [b'{"carats":', _carats(carats[rows]), b',"price":']
        segments += _money(prices[rows])
        if bounds is None:
            segments.append(tail)
        else:
            low, high = bounds[0][rows], bounds[1][rows]
            segments += [tail, *_money(low), b',"upper":', *_money(high), b"}},"]
        row = _row(segments)
        # A word of all rows at a time, turned when written into the body: writing straight
        # into rows is a strided write per word, twice as slow.
        words = np.empty((len(row), len(prices[rows])), np.uint64)
        for i, word in enumerate(row):
            words[i] = word
        return words

    blocks = [block(slice(at, at + BLOCK)) for at in range(0, len(carats), BLOCK)]
    # The rows are written in place in the body, a copy of ten megabytes fewer than joining
    # its parts; the head is padded to whole words (with spaces, which JSON allows after "[").
    head = b'{"model_version":%d,"predictions":[' % version
    head = head.ljust(_words(len(head)) * 8)
    body = np.empty(len(head) + sum(8 * words.size for words in blocks) + 1, np.uint8)
    body[: len(head)] = np.frombuffer(head, np.uint8)
    at = len(head)
    for words in blocks:
        body[at : at + 8 * words.size].view(np.uint64).reshape(words.T.shape)[:] = words.T
        at += 8 * words.size
    body[-2:] = np.frombuffer(b"]}", np.uint8)  # the last quote's comma closes the list
    return body.data
