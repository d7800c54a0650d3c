"""Many quotes written at once say exactly what one quote at a time says."""

import json
import re

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from app import quotes
from app.fields import MAX_CARATS, MIN_CARATS, money_text
from app.quotes import _digits, cents, many_quotes_json, one_quote_json, quote
from models import NonFiniteDataError, RingPriceRegressor
from models.report import QuoteLine

rng = np.random.default_rng(7)
_x = rng.uniform(0.5, 20, 200)
FITTED = RingPriceRegressor().fit(_x, 100 + 300 * _x + rng.normal(0, 50, 200)).quote_line()
# Negative quotes and an interval that spans zero.
NEGATIVE = RingPriceRegressor().fit([1, 2, 3, 4], [-150, -250, 20, -380]).quote_line()
# Two sales: no interval; quotes of a cent or less.
TINY = RingPriceRegressor().fit([1, 2], [0.004, 0.006]).quote_line()
# Quotes of up to twelve digits of dollars, three words of text each.
HUGE = QuoteLine(silver=-5e6, gold=9.9e7, level=0.9, mean_x=3.0, sxx=40.0, base=1.01, scale=5e6)

carats = arrays(
    np.float64,
    st.integers(1, 60),
    elements=st.floats(MIN_CARATS, MAX_CARATS, allow_nan=False) | st.sampled_from([0.5, 1.0]),
)


@pytest.mark.parametrize(
    "line", [FITTED, NEGATIVE, TINY, HUGE], ids=["fitted", "negative", "tiny", "huge"]
)
@given(values=carats)
@settings(max_examples=60, deadline=None)
def test_many_quotes_are_the_quotes_one_at_a_time(line: QuoteLine, values: np.ndarray) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quotes, "FEW", 0)  # written by words, however few
        body = json.loads(bytes(many_quotes_json(line, 3, values)))
    assert body["model_version"] == 3
    assert body["predictions"] == [quote(line, float(v)) for v in values]


def test_blocks_of_rows_of_their_own_widths_make_one_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quotes, "BLOCK", 4)
    monkeypatch.setattr(quotes, "FEW", 0)
    values = np.array([0.001, 1.5, 2.25, 3.0, 9999.999, 10_000.0, 0.1, 7.0, 0.5, 123.456, 1.0])
    for line in (FITTED, NEGATIVE, TINY, HUGE):
        body = bytes(many_quotes_json(line, 3, values))
        assert json.loads(body)["predictions"] == [quote(line, float(v)) for v in values]
    # Rows of one block share a width, and blocks differ: the first's are narrower.
    rows = bytes(many_quotes_json(FITTED, 3, values)).split(b"},{")[1:-1]
    assert len(rows[0]) == len(rows[1]) == len(rows[2]) < len(rows[3]) == len(rows[4])


@given(
    thousandths=st.lists(st.integers(1, 10**7), min_size=1, max_size=40),
    other=st.sampled_from([[], [10_000.0], [0.0015], [1 / 3]]),
)
@settings(max_examples=200, deadline=None)
def test_carats_are_written_as_orjson_writes_them(
    thousandths: list[int], other: list[float]
) -> None:
    # Three decimals at most (written without orjson), or any carats (written by it).
    values = [k / 1000 for k in thousandths] + [0.001, 9999.999, 9999.0, 0.1, 12.5] + other
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quotes, "FEW", 0)  # written by words, however few
        body = bytes(many_quotes_json(FITTED, 1, np.array(values)))
    written = re.findall(rb'"carats": *([^,]+),', body)
    assert written == [orjson.dumps(v) for v in values]


def test_one_quote_has_the_single_prediction_shape() -> None:
    body = json.loads(one_quote_json(FITTED, 4, 15.0))
    assert body == {**quote(FITTED, 15.0), "model_version": 4}
    low, high = FITTED.bounds(15.0)
    assert body["interval"] == {"level": 0.95, "lower": money_text(low), "upper": money_text(high)}
    assert json.loads(one_quote_json(TINY, 1, 2.0))["interval"] is None


def test_cents_round_as_money_text_does_even_where_times_100_is_off_by_an_ulp() -> None:
    # 1.005 * 100 is 100.49999999999999 in binary, 2.675 is just under, 0.125 an exact tie.
    ties = [12.345, 0.125, 0.375, 1.005, 2.675, 1e11 + 0.005, -0.005, -12.345, 1234.565]
    amounts = np.array(ties + list(rng.integers(-(10**9), 10**9, 20_000) / 200))
    expected = [int(money_text(float(a)).replace(".", "")) for a in amounts]
    assert cents(amounts).tolist() == expected


def test_quotes_past_what_an_amount_may_be_are_refused_one_or_many() -> None:
    huge = QuoteLine(silver=0.0, gold=1e300, level=0.95, mean_x=1.0, sxx=1.0, base=1.5, scale=1.0)
    with pytest.raises(NonFiniteDataError, match="too large to price"):
        quote(huge, 2.0)
    with pytest.raises(NonFiniteDataError, match="too large to price"):
        many_quotes_json(huge, 1, np.array([1.0, 2.0]))


def test_eight_digits_at_once_are_the_digits_of_every_value_under_1e8() -> None:
    # Every value of each step's range (the halves' four digits), its ends, and a sample.
    values = np.concatenate(
        [np.arange(10_000), np.arange(10_000) * 10_000 + 9_999, rng.integers(0, 10**8, 50_000)]
    ).astype(np.uint64)
    words = _digits(values)
    assert [int(w).to_bytes(8, "little") for w in words] == [b"%08d" % v for v in values]


def test_a_few_quotes_are_written_one_at_a_time() -> None:
    values = np.array([1.5, 2.0, 0.001])
    body = bytes(many_quotes_json(FITTED, 2, values))
    assert body == orjson.dumps(
        {"model_version": 2, "predictions": [quote(FITTED, v) for v in values.tolist()]}
    )
