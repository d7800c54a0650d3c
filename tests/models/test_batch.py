"""Default batch descent reaches the least-squares optimum; plain mode follows the article."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import ConvergenceWarning, InvalidParameterError, RingPriceRegressor, SufficientStats
from models.descent import FeatureSpace, Quadratic
from models.report import sse_at
from tests.models.reference import article_loop


def lstsq_on_centred(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Reference optimum: lstsq after centring (raw lstsq loses accuracy on clustered x)."""
    mx, my = x.mean(), y.mean()
    design = np.column_stack([np.ones_like(x), x - mx])
    (intercept, gold), *_ = np.linalg.lstsq(design, y - my, rcond=None)
    return float(my + intercept - gold * mx), float(gold)


EPS = float(np.finfo(float).eps)


def assert_prices_close(
    silver: float, gold: float, x: np.ndarray, y: np.ndarray, rtol: float = 1e-6
) -> None:
    """Each price within ``rtol`` relative, with a floor for prices that are cancellations.

    A price can sit near zero only as the difference of much larger terms: silver is
    ``mean_y - gold * mean_x`` and gold is ``r * std_y / std_x`` with a small correlation r.
    Any floating-point computation (lstsq included) carries an error of a few ulps of those
    terms, so "relative" is measured against ``|price| + 1e-6 * size of those terms``: plain
    1e-6 relative whenever the price is not itself a million-fold cancellation. Silver is
    extrapolated from the carats' mean to zero, so gold's floor, times ``|mean_x|``, carries
    into silver's. And carats stored as doubles far from zero (1000 +- 0.01) are only known to
    an ulp of their size, which bounds gold to ``eps * |mean_x| / std_x`` relative: no method
    can do better than the data's own rounding.
    """
    ref_silver, ref_gold = lstsq_on_centred(x, y)
    conditioning = abs(x.mean()) / x.std()
    gold_floor = rtol * 1e-6 * y.std() / x.std() + 64 * EPS * abs(ref_gold) * conditioning
    silver_terms = abs(y.mean()) + abs(ref_gold * x.mean())
    silver_floor = rtol * 1e-6 * silver_terms + abs(x.mean()) * gold_floor
    assert abs(gold - ref_gold) <= rtol * abs(ref_gold) + gold_floor
    assert abs(silver - ref_silver) <= rtol * abs(ref_silver) + silver_floor


def line(rng: np.random.Generator, x: np.ndarray, noise: float) -> np.ndarray:
    return 30.0 + 50.0 * x + rng.normal(0.0, noise, x.size)


def test_three_sales_give_116_67_and_50() -> None:
    reg = RingPriceRegressor().fit([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
    assert reg.silver_price_ == pytest.approx(350.0 / 3.0, rel=1e-12)
    assert reg.gold_price_per_carat_ == pytest.approx(50.0, rel=1e-12)
    assert round(reg.silver_price_, 2) == 116.67
    assert reg.converged_ is True
    assert reg.gradient_norm_ <= 1e-10
    assert reg.optimum_ == pytest.approx((350.0 / 3.0, 50.0), rel=1e-14)
    assert reg.optimum_gap_ < 1e-12
    assert 1 <= reg.n_iter_ <= 10
    assert reg.cost_history_.iterations[-1] == reg.n_iter_


@pytest.mark.parametrize(
    ("name", "low", "high", "n"),
    [
        ("article shape", 0.0, 25.0, 100),
        ("clustered", 18.0, 18.5, 500),
        ("far from zero", 999.5, 1000.5, 500),
        ("wide range", 0.5, 300.0, 1000),
    ],
)
def test_default_fit_reaches_optimum(name: str, low: float, high: float, n: int) -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(low, high, n)
    if low == 0.0:
        x += 1e-3
    y = np.round(30.0 + rng.integers(40, 60, n) * x, 2)
    reg = RingPriceRegressor().fit(x, y)
    ref_silver, ref_gold = lstsq_on_centred(x, y)
    assert reg.silver_price_ == pytest.approx(ref_silver, rel=1e-6), name
    assert reg.gold_price_per_carat_ == pytest.approx(ref_gold, rel=1e-6), name
    assert reg.converged_ is True
    assert reg.optimum_gap_ < 1e-9


def test_three_million_rows() -> None:
    rng = np.random.default_rng(3)
    n = 3_000_000
    x = rng.uniform(18.0, 18.5, n)
    y = line(rng, x, 5.0)
    stats = SufficientStats.from_arrays(x, y)
    reg = RingPriceRegressor().fit_stats(stats)
    ref_silver, ref_gold = lstsq_on_centred(x, y)
    assert reg.silver_price_ == pytest.approx(ref_silver, rel=1e-6)
    assert reg.gold_price_per_carat_ == pytest.approx(ref_gold, rel=1e-6)
    assert reg.converged_ is True
    assert reg.report_.n_samples == n


def test_scaled_numeric_rate_also_converges() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(1.0, 25.0, 200)
    y = line(rng, x, 10.0)
    reg = RingPriceRegressor(learning_rate=0.3).fit(x, y)
    assert reg.converged_ is True
    assert reg.n_iter_ > 10
    assert reg.max_stable_learning_rate_ == pytest.approx(2.0, rel=1e-9)
    assert_prices_close(reg.silver_price_, reg.gold_price_per_carat_, x, y)
    costs = reg.cost_history_.cost
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(costs))


def test_raw_auto_rate_on_clustered_data_warns_and_flags() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(18.0, 18.5, 100)
    y = line(rng, x, 1.0)
    with pytest.warns(ConvergenceWarning, match="raise max_iterations"):
        reg = RingPriceRegressor(feature_scaling=False, max_iterations=500).fit(x, y)
    assert reg.converged_ is False
    assert reg.n_iter_ == 500
    assert math.isfinite(reg.silver_price_)
    assert reg.optimum_gap_ > 1e-3


def test_cost_history_downsampled_for_long_runs() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([150.0, 250.0, 250.0, 380.0])
    reg = RingPriceRegressor(
        learning_rate=0.01, max_iterations=5000, tolerance=0, feature_scaling=False
    ).fit(x, y)
    history = reg.cost_history_
    assert len(history) == 1000
    assert history.iterations[0] == 0 and history.iterations[-1] == 5000
    assert history.iterations == sorted(set(history.iterations))


data_sets = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "n": st.integers(3, 2000),
        "offset": st.sampled_from([0.0, 1.0, 18.0, 1000.0]),
        "log_spread": st.floats(-3.0, 3.0),
        "silver": st.floats(-1e3, 1e3),
        "log_gold": st.floats(-2.0, 3.0),
        "gold_sign": st.sampled_from([-1.0, 1.0]),
        "noise": st.sampled_from([0.0, 1e-6, 0.01, 0.3, 3.0]),
    }
)


def make_data(p: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(p["seed"])
    spread = 10.0 ** p["log_spread"]
    x = p["offset"] + spread * (rng.random(p["n"]) + 1e-3)
    gold = p["gold_sign"] * 10.0 ** p["log_gold"]
    y = p["silver"] + gold * x + p["noise"] * abs(gold) * spread * rng.standard_normal(p["n"])
    return x, y


@settings(max_examples=150, deadline=None)
@given(data_sets)
def test_default_fit_equals_lstsq(p: dict) -> None:
    x, y = make_data(p)
    reg = RingPriceRegressor().fit(x, y)
    assert reg.converged_ is True
    assert_prices_close(reg.silver_price_, reg.gold_price_per_carat_, x, y)


@settings(max_examples=60, deadline=None)
@given(data_sets)
def test_fit_from_merged_sql_style_stats_equals_lstsq(p: dict) -> None:
    x, y = make_data(p)
    half = x.size // 2
    # Two database rows with different (arbitrary) shifts, merged.
    a = SufficientStats.from_arrays(x[:half], y[:half], shift_x=float(x[0]), shift_y=0.0)
    b = SufficientStats.from_arrays(x[half:], y[half:], shift_x=float(x[-1]), shift_y=y[-1])
    reg = RingPriceRegressor().fit_stats(a + b)
    assert_prices_close(reg.silver_price_, reg.gold_price_per_carat_, x, y)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 300),
    offset=st.sampled_from([0.0, 5.0, 50.0]),
    spread=st.floats(0.1, 30.0),
    fraction=st.floats(0.05, 0.95),
    iterations=st.integers(1, 300),
    noise=st.sampled_from([0.0, 0.1, 5.0]),
)
def test_plain_mode_equals_article_loop(
    seed: int,
    n: int,
    offset: float,
    spread: float,
    fraction: float,
    iterations: int,
    noise: float,
) -> None:
    rng = np.random.default_rng(seed)
    x = offset + spread * (rng.random(n) + 1e-3)
    y = np.round(30.0 + 50.0 * x + noise * spread * rng.standard_normal(n), 2)
    stats = SufficientStats.from_arrays(x, y)
    alpha = fraction * Quadratic.from_stats(stats, FeatureSpace.raw()).max_stable_rate()
    reg = RingPriceRegressor(
        learning_rate=alpha, max_iterations=iterations, tolerance=0, feature_scaling=False
    ).fit(x, y)
    silver, gold, history = article_loop(x, y, alpha, iterations)
    theta = np.array([silver, gold])
    # theta0 may pass through zero on its way, so each component is compared relative to the
    # size of the parameter vector; the costs relative to themselves, with a floor of 1e-12
    # of the starting cost (a cost near a perfect fit is a cancellation in any sum formula).
    size = np.abs(theta).max()
    assert abs(reg.silver_price_ - theta[0]) <= 1e-9 * size
    assert abs(reg.gold_price_per_carat_ - theta[1]) <= 1e-9 * size
    assert reg.n_iter_ == iterations
    start = 0.5 * np.mean(y**2)
    if iterations <= 1000:
        np.testing.assert_allclose(
            reg.cost_history_.cost[1:], history, rtol=1e-9, atol=1e-12 * start
        )


def test_a_tolerance_that_stops_before_the_first_step_is_refused() -> None:
    x, y = [1.0, 2.0, 3.0], [150.0, 250.0, 250.0]
    with pytest.raises(InvalidParameterError, match="before its first step") as caught:
        RingPriceRegressor(tolerance=1e6).fit(x, y)
    assert caught.value.parameter == "tolerance"
    with pytest.raises(InvalidParameterError, match="before its first step"):
        RingPriceRegressor(tolerance=1e9, feature_scaling=False).fit(x, y)
    # Where the start is the optimum already (prices that do not depend on carats), stopping
    # there is right.
    flat = RingPriceRegressor(tolerance=1e6).fit(x, [200.0, 200.0, 200.0])
    assert (flat.n_iter_, flat.converged_) == (0, True)
    assert (flat.silver_price_, flat.gold_price_per_carat_) == (200.0, 0.0)


def test_the_descent_path_ends_at_the_fitted_prices_and_lowers_the_cost() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(1.0, 25.0, 200)
    y = line(rng, x, 10.0)
    for reg in (
        RingPriceRegressor(learning_rate=0.3).fit(x, y),
        RingPriceRegressor(
            learning_rate=0.001, max_iterations=5000, tolerance=0, feature_scaling=False
        ).fit(x, y),
    ):
        history = reg.cost_history_
        assert len(history.path) == len(history.cost) == len(history.iterations) <= 1000
        assert history.path[-1] == pytest.approx((reg.silver_price_, reg.gold_price_per_carat_))
        # Each point's cost is the cost the history states for it.
        stats = reg.stats_
        for (silver, gold), cost in zip(history.path[::50], history.cost[::50], strict=True):
            assert sse_at(stats, silver, gold) / (2 * stats.n) == pytest.approx(cost, rel=1e-9)
