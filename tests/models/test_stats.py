"""Sufficient statistics: construction, accuracy, merging, serialisation, refusals."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import (
    DegenerateDataError,
    InvalidDataError,
    MismatchedLengthError,
    NonFiniteDataError,
    NonPositiveCaratsError,
    NoSalesError,
    RingPriceRegressor,
    SufficientStats,
)


def exact_centred(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Sxx, Sxy, Syy in exact rational arithmetic."""
    fx = [Fraction(v) for v in x.tolist()]
    fy = [Fraction(v) for v in y.tolist()]
    mx, my = sum(fx) / len(fx), sum(fy) / len(fy)
    sxx = sum((a - mx) ** 2 for a in fx)
    sxy = sum((a - mx) * (b - my) for a, b in zip(fx, fy, strict=True))
    syy = sum((b - my) ** 2 for b in fy)
    return float(sxx), float(sxy), float(syy)


def test_from_arrays_matches_definitions() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.5])
    y = np.array([150.0, 250.0, 250.0, 400.0])
    s = SufficientStats.from_arrays(x, y, shift_x=2.0, shift_y=200.0)
    assert (s.n, s.shift_x, s.shift_y) == (4, 2.0, 200.0)
    assert s.sum_x == pytest.approx(np.sum(x - 2.0))
    assert s.sum_xx == pytest.approx(np.sum((x - 2.0) ** 2))
    assert s.sum_xy == pytest.approx(np.sum((x - 2.0) * (y - 200.0)))
    assert s.sum_yy == pytest.approx(np.sum((y - 200.0) ** 2))
    assert s.mean_x == pytest.approx(x.mean())
    assert s.mean_y == pytest.approx(y.mean())
    assert s.sxx == pytest.approx(np.sum((x - x.mean()) ** 2))


def test_clustered_carats_lose_no_accuracy() -> None:
    # Carats a million away from zero with a spread of 0.5: the spread is 1e-12 of x^2.
    rng = np.random.default_rng(0)
    x = rng.uniform(1e6, 1e6 + 0.5, 20_000)
    y = 30.0 + 50.0 * x + rng.normal(0, 0.5, x.size)
    s = SufficientStats.from_arrays(x, y)
    sxx, sxy, syy = exact_centred(x, y)
    # Any summation order of n positive terms is within (n - 1) * 2^-53 of the exact sum:
    # 2.2e-12 relative here, whatever BLAS kernel numpy runs.
    assert s.sxx == pytest.approx(sxx, rel=1e-11)
    assert s.sxy == pytest.approx(sxy, rel=1e-11)
    assert s.syy == pytest.approx(syy, rel=1e-11)
    # The unshifted formula, even with correctly rounded sums (math.fsum, no BLAS), keeps
    # only two or three digits after the cancellation: the reason the statistics are shifted.
    raw_sxx = math.fsum((x * x).tolist()) - math.fsum(x.tolist()) ** 2 / x.size
    assert abs(raw_sxx - sxx) / sxx > 1e-6


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
    offset=st.sampled_from([0.0, 18.0, 1000.0]),
)
def test_merge_equals_stats_of_concatenation(seed: int, sizes: list[int], offset: float) -> None:
    rng = np.random.default_rng(seed)
    parts = []
    for size in sizes:
        x = offset + rng.random(size) + 1e-3
        parts.append((x, 20.0 + 50.0 * x + rng.normal(0, 1, size)))
    # Each part shifted by its own first row, as a per-store SQL query might be.
    stats = [
        SufficientStats.from_arrays(x, y, shift_x=float(x[0]) if x.size else 0.0) for x, y in parts
    ]
    merged = sum(stats)
    whole = SufficientStats.from_arrays(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )
    assert merged.n == whole.n
    if whole.n:
        assert merged.mean_x == pytest.approx(whole.mean_x, rel=1e-13)
        assert merged.mean_y == pytest.approx(whole.mean_y, rel=1e-13)
        assert merged.sxx == pytest.approx(whole.sxx, rel=1e-9, abs=1e-12)
        assert merged.sxy == pytest.approx(whole.sxy, rel=1e-9, abs=1e-9)
        assert merged.syy == pytest.approx(whole.syy, rel=1e-9, abs=1e-9)


def test_merge_with_empty_and_builtin_sum() -> None:
    s = SufficientStats.from_arrays([1.0, 2.0], [3.0, 4.0])
    empty = SufficientStats(0, 5.0, 7.0)
    assert s + empty is s
    assert empty + s is s
    assert s - empty is s
    assert sum([s]) is s


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_a=st.integers(0, 300),
    n_b=st.integers(1, 300),
    offset=st.sampled_from([0.0, 18.0, 1000.0]),
    spread_b=st.sampled_from([1e-3, 1.0, 30.0]),
)
def test_removing_what_was_added_gives_back_the_statistics(
    seed: int, n_a: int, n_b: int, offset: float, spread_b: float
) -> None:
    rng = np.random.default_rng(seed)
    xa = offset + rng.random(n_a) + 1e-3
    xb = offset + spread_b * rng.random(n_b) + 1e-3
    a = SufficientStats.from_arrays(xa, 20.0 + 50.0 * xa + rng.normal(0, 1, n_a))
    b = SufficientStats.from_arrays(xb, 20.0 + 60.0 * xb + rng.normal(0, 5, n_b))
    back = (a + b) - b
    assert back.n == a.n
    if a.n == 0:
        assert (back.sum_x, back.sum_y, back.sum_xx, back.sum_xy, back.sum_yy) == (0.0,) * 5
        return
    # Taking b out cancels b's share of the sums, so the error is relative to the sums of
    # all the sales around a's mean, not to a's own.
    whole = (a + b).shifted(a.mean_x, a.mean_y)
    size_x, size_y = math.sqrt(whole.sum_xx), math.sqrt(whole.sum_yy)
    assert back.mean_x == pytest.approx(a.mean_x, rel=1e-12, abs=1e-12 * size_x)
    assert back.mean_y == pytest.approx(a.mean_y, rel=1e-12, abs=1e-12 * size_y)
    assert back.sxx == pytest.approx(a.sxx, rel=1e-12, abs=1e-12 * size_x * size_x)
    assert back.sxy == pytest.approx(a.sxy, rel=1e-12, abs=1e-12 * size_x * size_y)
    assert back.syy == pytest.approx(a.syy, rel=1e-12, abs=1e-12 * size_y * size_y)
    assert back.sum_xx >= 0.0 and back.sum_yy >= 0.0


def test_taking_out_sales_one_at_a_time_to_none_leaves_zero_sums() -> None:
    x = np.array([18.1, 18.2, 18.45, 18.3])
    y = np.array([930.0, 941.0, 955.5, 948.0])
    rest = SufficientStats.from_arrays(x, y)
    for i in range(x.size):
        rest = rest - SufficientStats.from_arrays(x[i : i + 1], y[i : i + 1])
        assert rest.n == x.size - 1 - i
        assert rest.sum_xx >= 0.0 and rest.sum_yy >= 0.0
        if rest.n:
            assert rest.mean_x == pytest.approx(x[i + 1 :].mean(), rel=1e-12)
    assert rest == SufficientStats(0, rest.shift_x, rest.shift_y)


def test_taking_out_more_sales_than_there_are_is_refused() -> None:
    one = SufficientStats.from_arrays([1.0], [2.0])
    two = SufficientStats.from_arrays([1.0, 2.0], [2.0, 3.0])
    with pytest.raises(InvalidDataError, match="cannot take statistics of 2 sales out of"):
        one - two


def test_from_sums_is_one_sql_row() -> None:
    x = np.array([18.1, 18.2, 18.45])
    y = np.array([930.0, 941.0, 955.5])
    sx, sy = 18.0, 900.0
    row = {
        "n": 3,
        "shift_x": sx,
        "shift_y": sy,
        "sum_x": float(np.sum(x - sx)),
        "sum_y": float(np.sum(y - sy)),
        "sum_xx": float(np.sum((x - sx) ** 2)),
        "sum_xy": float(np.sum((x - sx) * (y - sy))),
        "sum_yy": float(np.sum((y - sy) ** 2)),
    }
    s = SufficientStats.from_sums(**row)
    direct = SufficientStats.from_arrays(x, y)
    assert s.sxy / s.sxx == pytest.approx(direct.sxy / direct.sxx, rel=1e-12)
    assert s.to_dict() == row


def test_from_sums_empty_sql_row_with_nulls_then_fit_refuses() -> None:
    s = SufficientStats.from_sums(
        n=0, sum_x=None, sum_y=None, sum_xx=None, sum_xy=None, sum_yy=None
    )
    assert s.n == 0
    with pytest.raises(NoSalesError, match="no sales to fit"):
        RingPriceRegressor().fit_stats(s)


def test_to_dict_round_trip_is_json_safe() -> None:
    s = SufficientStats.from_arrays([1.0, 2.5, 3.0], [150.0, 250.0, 250.0])
    again = SufficientStats.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n": -1}, InvalidDataError, "n must be >= 0"),
        ({"n": 2.5}, InvalidDataError, "n must be an integer"),
        ({"n": 2, "sum_xx": -1.0}, InvalidDataError, "must be >= 0"),
        ({"n": 2, "sum_x": math.nan}, NonFiniteDataError, "sum_x must be finite"),
        ({"n": 2, "shift_y": math.inf}, NonFiniteDataError, "shift_y must be finite"),
        ({"n": 0, "sum_x": 1.0}, InvalidDataError, "with n = 0 every sum must be 0"),
        ({"n": 2, "sum_x": None}, InvalidDataError, "sum_x is missing"),
    ],
)
def test_from_sums_refusals(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        SufficientStats.from_sums(**kwargs)


def test_from_dict_missing_field() -> None:
    with pytest.raises(InvalidDataError, match="missing sum_yy"):
        SufficientStats.from_dict(
            {"n": 1, "shift_x": 0, "shift_y": 0, "sum_x": 0, "sum_y": 0, "sum_xx": 0, "sum_xy": 0}
        )


@pytest.mark.parametrize(
    ("carats", "prices", "error", "message"),
    [
        ([1.0, 2.0], [1.0], MismatchedLengthError, "same length, got 2 carats and 1 prices"),
        (
            [1.0, math.nan, 3.0],
            [1.0, 2.0, 3.0],
            NonFiniteDataError,
            "carats contain 1 non-finite value.*index 1",
        ),
        (
            [1.0, 2.0, 3.0],
            [1.0, 2.0, math.inf],
            NonFiniteDataError,
            "prices contain 1 non-finite value.*index 2",
        ),
        ([1.0, 0.0, 3.0], [1.0, 2.0, 3.0], NonPositiveCaratsError, r"carats must be > 0, got 0.0"),
        ([1.0, -2.0], [1.0, 2.0], NonPositiveCaratsError, r"got -2.0 at index 1"),
        ([[1.0, 2.0]], [[1.0, 2.0]], InvalidDataError, "one-dimensional"),
        (["a", "b"], [1.0, 2.0], InvalidDataError, "carats must be numbers"),
        ([1e200, 2e200], [1.0, 2.0], NonFiniteDataError, "overflowed"),
    ],
)
def test_from_arrays_refusals(carats, prices, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        SufficientStats.from_arrays(carats, prices)


def test_degenerate_data_refused_by_fit() -> None:
    with pytest.raises(NoSalesError, match="at least two sales with different carat values"):
        RingPriceRegressor().fit([], [])
    with pytest.raises(DegenerateDataError, match="only one sale"):
        RingPriceRegressor().fit([2.0], [100.0])
    with pytest.raises(DegenerateDataError, match=r"all 3 sales have the same carat value \(0.1\)"):
        RingPriceRegressor().fit([0.1, 0.1, 0.1], [100.0, 110.0, 120.0])
    with pytest.raises(DegenerateDataError):
        RingPriceRegressor(method="sgd").fit([5.0, 5.0], [100.0, 110.0])


def test_two_close_but_distinct_carats_are_fittable() -> None:
    reg = RingPriceRegressor().fit([18.0, 18.0 + 1e-9, 18.0], [900.0, 900.00005, 900.0])
    assert reg.gold_price_per_carat_ == pytest.approx(50000.0, rel=1e-4)


def test_is_an_exception_hierarchy_of_value_errors() -> None:
    assert issubclass(NoSalesError, ValueError)
    assert issubclass(DegenerateDataError, InvalidDataError)
