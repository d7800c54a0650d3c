"""The domain of every value a client sends, and the types that enforce it: in JSON bodies,
query strings and CSV files alike, so that the OpenAPI schema states exactly what is accepted.

Amounts (money) leave the service as strings with two decimals; estimates as JSON numbers.
"""

import calendar
import math
import re
import sys
import unicodedata
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictFloat,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# The domain of every number a client sends, stated once: the OpenAPI schema, the JSON
# validation and the CSV import all take it from here.
MIN_CARATS = 0.001
MAX_CARATS = 10_000.0
MAX_PRICE = Decimal("99999999.99")
# The largest quote (and interval bound) in dollars: every amount up to it is exact to the
# cent as a float64, and a fit that would quote more is refused.
MAX_QUOTE = 1e12
NAME_MAX_LENGTH = 100
# Ids stay exact as JSON numbers in every client (JavaScript's safe integers).
MAX_ID = 2**53 - 1
CENT = Decimal("0.01")
# A sale outside these years (in UTC) is a typo, and the schema can say so.
EARLIEST_SALE = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_SALE = datetime(2100, 1, 1, tzinfo=UTC)


def to_cents(price: Decimal) -> int:
    """Dollars with at most two decimals as whole cents, the stored form of money."""
    return int(price.scaleb(2))


def from_cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def to_money(value: Decimal) -> Decimal:
    """Round a dollar amount to whole cents (banker's rounding, as in accounting)."""
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def money_text(dollars: float) -> str:
    """An amount computed by a model (a quote) as dollars with two decimals; a quote that
    rounds to nothing is "0.00", never "-0.00"."""
    text = f"{dollars:.2f}"
    return "0.00" if text == "-0.00" else text


# What the OpenAPI schema promises is exactly what is accepted: RFC 3339 date-times with an
# offset, prices as numbers or as plain decimal text. (pydantic alone would also take unix
# timestamps, naive times, padded strings and non-ASCII digits.)
RFC3339 = re.compile(
    r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
# Zeros after the cents are fine (12.340 is 12.34), in text as in JSON numbers.
PRICE_TEXT = re.compile(r"^(?=.*[1-9])[0-9]{1,8}(\.[0-9]{1,2}0*)?$")
TIMESTAMP_RULE = "an RFC 3339 date-time with an offset, in 1900-2099 UTC, e.g. 2026-11-20T14:30:00Z"
PRICE_RULE = "a positive amount with at most two decimals, e.g. 250.10"
# Where a number arrives as text (a CSV field), it is written as plain decimals: ASCII digits,
# no sign, no exponent. The range is the JSON one.
CARATS_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)?$")
CARATS_RULE = f"a plain decimal number from {MIN_CARATS:g} to {MAX_CARATS:,.0f}, e.g. 1.25"
ID_TEXT = re.compile(r"^[0-9]{1,16}$")
ID_RULE = f"a positive integer up to {MAX_ID}"


def _rfc3339(value: object) -> object:
    if isinstance(value, str):
        return timestamp_from_text(value)
    if not isinstance(value, datetime):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


def in_sale_years(moment: datetime) -> datetime:
    """The moment in UTC, or ValueError when it falls outside the years a sale may have."""
    moment = moment.astimezone(UTC)
    if not EARLIEST_SALE <= moment < LATEST_SALE:
        raise ValueError(f"must be {TIMESTAMP_RULE}")
    return moment


# Values written as text (the fields of a CSV file), under the rules their JSON forms follow.
# Each raises ValueError saying what the value must be.


def carats_from_text(text: str) -> float:
    if CARATS_TEXT.fullmatch(text):
        carats = float(text)
        if MIN_CARATS <= carats <= MAX_CARATS:
            return carats
    raise ValueError(f"must be {CARATS_RULE}")


def price_from_text(text: str) -> Decimal:
    # PRICE_TEXT admits nothing above MAX_PRICE, nothing at or below zero, two decimals at most.
    if not PRICE_TEXT.fullmatch(text):
        raise ValueError(f"must be {PRICE_RULE}")
    return Decimal(text)


def _out_of_range(text: str) -> str | None:
    """Which part of a date-time RFC3339 matched is out of range, if one is: the pattern
    fixes where each part is."""
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if not 1 <= month <= 12:
        return "the month must be 01-12"
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        return f"the day must be 01-{days} in that month"
    for name, at, most in (("hour", 11, 23), ("minute", 14, 59), ("second", 17, 59)):
        if int(text[at : at + 2]) > most:
            return f"the {name} must be 00-{most}"
    if text[-1] not in "Zz":
        if int(text[-5:-3]) > 23:
            return "the offset's hours must be 00-23"
        if int(text[-2:]) > 59:
            return "the offset's minutes must be 00-59"
    return None


def timestamp_from_text(text: str) -> datetime:
    if not RFC3339.fullmatch(text):
        raise ValueError(f"must be {TIMESTAMP_RULE}")
    # fromisoformat wants the separator and the zone letter in upper case; RFC 3339 doesn't.
    # It checks every part the pattern placed but an offset's minutes (it takes +00:60), so
    # the slower check, which says what is wrong, runs only for a refused time or an offset.
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        moment = None
    if moment is None or text[-1] not in "Zz":
        if fault := _out_of_range(text):
            raise ValueError(f"not a valid date-time: {fault}")
        moment = datetime.fromisoformat(text.upper())
    return in_sale_years(moment)


def id_from_text(text: str) -> int:
    if ID_TEXT.fullmatch(text) and 1 <= (number := int(text)) <= MAX_ID:
        return number
    raise ValueError(f"must be {ID_RULE}")


# Python will not read an integer of more digits than this from text (a defence against
# quadratic conversions); a JSON body holds no integer longer, whatever way it is written.
MAX_DIGITS = sys.get_int_max_str_digits()
NUMBER_TOO_LONG = f"number too long (more than {MAX_DIGITS} digits)"


def _decimals(number: Decimal) -> int:
    """How many decimals a finite number has as written, zeros after the last other digit
    aside; exact at any length, where normalize() would round to the context's 28 digits."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int), "a finite number"
    trailing_zeros = len(digits) - len(bytes(digits).rstrip(b"\0"))
    return max(0, -(exponent + trailing_zeros))


def _json_integer(value: object) -> object:
    """A JSON integer: 12 or 12.0 or 1.2e1 (JSON Schema counts them all), but not "12" or
    true. JSON bodies bring numbers with a fraction or an exponent as Decimal."""
    if isinstance(value, Decimal) and value.is_finite() and _decimals(value) == 0:
        if value.adjusted() >= MAX_DIGITS:
            raise ValueError(NUMBER_TOO_LONG)
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


JsonInt = BeforeValidator(_json_integer)


def _price_input(value: object) -> object:
    """A price judged as written: JSON bodies bring a number with a fraction or an exponent
    as the Decimal of its literal, so 99999999.989999999 is not taken for 99999999.99."""
    if isinstance(value, float) and math.isfinite(value):
        value = Decimal(repr(value))  # the shortest literal that reads back as this float
    if isinstance(value, str) and not PRICE_TEXT.fullmatch(value):
        raise ValueError(f"must be {PRICE_RULE}")
    if isinstance(value, Decimal) and value.is_finite() and _decimals(value) > 2:
        raise ValueError(f"must be {PRICE_RULE}")
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("must be a number or a decimal string")
    return value


def _at_most_max(price: Decimal) -> Decimal:
    # pydantic's own le=MAX_PRICE says "less than or equal to Decimal('99999999.99')".
    if price > MAX_PRICE:
        raise PydanticCustomError(
            "less_than_equal", "Input should be less than or equal to {le}", {"le": str(MAX_PRICE)}
        )
    return price


def _quantized(price: Decimal) -> Decimal:
    # 1, 1.0 and "1.00" are one price: the canonical form keeps Idempotency-Key bodies equal.
    return price.quantize(CENT)


def _unicode_class(categories: set[str], but: str = "") -> str:
    """A regex character class of every code point in the given Unicode categories (but
    those given), so that the OpenAPI pattern can state the rule that unicodedata enforces."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) in categories and chr(code) not in but:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))

    def char(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


# What a store name may not hold, by Unicode category. Lone surrogates (Cs) can arrive as JSON
# escapes but cannot be stored as UTF-8; the pattern leaves them out because a JavaScript
# pattern without the u flag would refuse the halves of every pair with them.
_NOT_IN_A_NAME = {
    "Cc": "a control or format character",
    "Cf": "a control or format character",
    "Zl": "a line or paragraph separator",
    "Zp": "a line or paragraph separator",
    "Co": "a private-use character",
    "Cn": "unassigned or a noncharacter",
    "Cs": "a lone surrogate",
}
# Every space but U+0020 is refused too: "Aurum &\u00a0Co" would pass for "Aurum & Co".
_FORBIDDEN = _unicode_class(set(_NOT_IN_A_NAME) - {"Cs"} | {"Zs"}, but=" ")
_MARKS = _unicode_class({"Mn", "Mc", "Me"})
# Printable, one kind of space and not at either end, no combining mark first.
NAME_PATTERN = rf"^(?![ {_MARKS}])(?!.* $)[^{_FORBIDDEN}]+$"
_NAME = re.compile(NAME_PATTERN)


def _name_fault(name: str) -> str:
    """Why a name is refused: its first character at fault."""
    for char in name:
        category, code = unicodedata.category(char), f"U+{ord(char):04X}"
        if category == "Zs" and char != " ":
            return f"must use the space U+0020, not {code}"
        if category in _NOT_IN_A_NAME:
            return f"must not hold {code}: {_NOT_IN_A_NAME[category]}"
    if unicodedata.category(name[0]).startswith("M"):
        return f"must not start with a combining mark (U+{ord(name[0]):04X})"
    return "must not start or end with a space"


def _store_name(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    if not _NAME.fullmatch(name) or any(unicodedata.category(c) == "Cs" for c in name):
        raise ValueError(_name_fault(name))
    # NFC can make a name longer (U+0344 is two characters in NFC): the stored form counts.
    if len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"must be at most {NAME_MAX_LENGTH} characters in NFC form")
    return name


Amount = Annotated[
    str,
    Field(
        description='An amount: dollars as a string with two decimals, e.g. "250.10".',
        pattern=r"^-?[0-9]+\.[0-9]{2}$",
    ),
]
Estimate = Annotated[
    float, Field(description="An estimate: a JSON number at full precision (dollars).")
]
Money = Annotated[
    Decimal,
    PlainSerializer(lambda d: f"{to_money(d):.2f}", return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]+\.[0-9]{2}$",
            "description": "An amount: dollars as a string with two decimals.",
        }
    ),
]
# A number in a query string, written as JSON writes numbers: Python's float() would also take
# "1_0" (ten), " 5", "infinity" and other digits than ASCII ones.
NUMBER_TEXT = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


# An integer in a query string or a path, written as JSON writes integers: int() and pydantic
# would also take "1_0" (ten), " 1 ", "+1", "1.0" and "0001".
INTEGER_TEXT = re.compile(r"^-?(0|[1-9][0-9]*)$")


def _integer_text(value: object) -> object:
    if isinstance(value, str) and not INTEGER_TEXT.fullmatch(value):
        raise ValueError("must be a whole number, written as 12")
    return value


def _number_text(value: object) -> object:
    if isinstance(value, str) and not NUMBER_TEXT.fullmatch(value):
        raise ValueError("must be a number, written as 15 or 2.5")
    return value


QueryCarats = Annotated[
    float,
    BeforeValidator(_number_text),
    Field(ge=MIN_CARATS, le=MAX_CARATS, allow_inf_nan=False),
    WithJsonSchema(
        {"type": "number", "minimum": MIN_CARATS, "maximum": MAX_CARATS, "description": "Carats."}
    ),
]
Carats = Annotated[
    float, Field(ge=MIN_CARATS, le=MAX_CARATS, allow_inf_nan=False, description="Carats.")
]
BodyCarats = Annotated[float, Field(ge=MIN_CARATS, le=MAX_CARATS, allow_inf_nan=False, strict=True)]
Price = Annotated[
    Decimal,
    BeforeValidator(_price_input),
    Field(gt=0, allow_inf_nan=False),
    AfterValidator(_at_most_max),
    AfterValidator(_quantized),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": float(MAX_PRICE),
                    "multipleOf": 0.01,
                },
                {"type": "string", "pattern": PRICE_TEXT.pattern},
            ],
            "description": 'Dollars, at most two decimals: 250.1 or "250.10". Zeros after '
            'the cents are fine (12.340 and "12.340" are 12.34); a number is judged as '
            "written, exactly, never rounded to a float first.",
        }
    ),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    AfterValidator(in_sale_years),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": RFC3339.pattern,
            "description": f"A date-time: {TIMESTAMP_RULE}.",
        }
    ),
]
# An integer in a query string or a path: plain ASCII digits, as JSON writes integers. It goes
# after the bounds (Field, Query), which then stay in the OpenAPI schema as minimum and maximum.
IntegerText = BeforeValidator(_integer_text)
RowId = Annotated[int, Field(ge=1, le=MAX_ID), IntegerText]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID), JsonInt]
Flag = Annotated[bool, Field(strict=True)]
PositiveRate = Annotated[StrictFloat, Field(gt=0, le=1e6, allow_inf_nan=False)]
# Unique among stores in its NFC form, which is the form stored.
Name = Annotated[
    str,
    # Bounds the work; the limit that counts applies to the NFC form (_store_name).
    StringConstraints(min_length=1, max_length=4 * NAME_MAX_LENGTH),
    AfterValidator(_store_name),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH, "pattern": NAME_PATTERN}
    ),
]
# A page's cursor: pass back the value a page gave as next_cursor.
Cursor = Annotated[str, Field(pattern=r"^[0-9]{1,16}$")]
