"""The article's worked numbers and its plain gradient descent, reproduced exactly."""

from __future__ import annotations

import numpy as np
import pytest

from models import DivergenceError, RingPriceRegressor, SufficientStats
from models.descent import FeatureSpace, Quadratic
from tests.models.reference import article_loop

TOY_X = [1.0, 2.0, 3.0]
TOY_Y = [3.0, 6.0, 9.0]


def toy_cost() -> Quadratic:
    return Quadratic.from_stats(SufficientStats.from_arrays(TOY_X, TOY_Y), FeatureSpace.raw())


def article_shaped_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """100 rings, 0-25 carats, silver $30, gold $40-59 per carat, prices rounded to cents."""
    rng = np.random.default_rng(seed)
    x = 25.0 * rng.random(100)
    gold = rng.integers(40, 60, size=100)
    return x, np.round(30.0 + gold * x, 2)


def test_cost_at_zero_is_21() -> None:
    # (0-3)^2 + (0-6)^2 + (0-9)^2 = 126; 126 / (2*3) = 21
    assert toy_cost().cost(0.0, 0.0) == pytest.approx(21.0, rel=1e-15)


def test_gradient_of_theta1_at_zero_is_minus_14() -> None:
    # ((0-3)*1 + (0-6)*2 + (0-9)*3) / 3 = -42 / 3 = -14; for theta0: (-3-6-9)/3 = -6
    g0, g1 = toy_cost().gradient(0.0, 0.0)
    assert g1 == pytest.approx(-14.0, rel=1e-15)
    assert g0 == pytest.approx(-6.0, rel=1e-15)


def test_cost_parabola_in_theta1() -> None:
    # J(0, t) = (1 + 4 + 9) * (3 - t)^2 / 6 = 7/3 * (3 - t)^2
    costs = [toy_cost().cost(0.0, float(t)) for t in range(7)]
    assert [round(c, 2) for c in costs] == [21.0, 9.33, 2.33, 0.0, 2.33, 9.33, 21.0]
    assert costs == pytest.approx([7 / 3 * (3 - t) ** 2 for t in range(7)], rel=1e-14, abs=1e-14)


def test_full_step_without_learning_rate_overshoots_to_282() -> None:
    # theta1 = 0 - (-14) = 14: 7/3 * 11^2 = 282.33
    assert toy_cost().cost(0.0, 14.0) == pytest.approx(282.3333333, rel=1e-9)


def test_walkthrough_with_only_theta1_moving() -> None:
    q = toy_cost()
    theta1 = 0.0 - 0.01 * q.gradient(0.0, 0.0)[1]
    assert theta1 == pytest.approx(0.14, rel=1e-14)
    # residuals -2.86, -5.72, -8.58; squares sum 114.5144; / 6 = 19.0857
    assert q.cost(0.0, theta1) == pytest.approx(19.0857333, rel=1e-8)
    assert round(q.cost(0.0, theta1), 2) == 19.09
    # (-2.86*1 - 5.72*2 - 8.58*3) / 3 = -40.04 / 3 = -13.346667
    g1 = q.gradient(0.0, theta1)[1]
    assert g1 == pytest.approx(-40.04 / 3, rel=1e-13)
    theta1 -= 0.01 * g1
    assert theta1 == pytest.approx(0.14 + 0.4004 / 3, rel=1e-13)
    assert round(theta1, 6) == 0.273467
    # 7/3 * (3 - 0.27346667)^2 = 17.3488
    assert q.cost(0.0, theta1) == pytest.approx(7 / 3 * (3 - theta1) ** 2, rel=1e-13)
    assert round(q.cost(0.0, theta1), 2) == 17.35


def test_two_parameter_updates_by_hand() -> None:
    # Step 1 from (0, 0): gradient (-6, -14), so theta = (0.06, 0.14).
    #   predictions 0.20, 0.34, 0.48; residuals -2.80, -5.66, -8.52
    #   cost (7.84 + 32.0356 + 72.5904) / 6 = 112.466 / 6 = 18.744333
    # Step 2: gradient theta0 = (-2.80 - 5.66 - 8.52) / 3 = -5.66
    #         gradient theta1 = (-2.80 - 11.32 - 25.56) / 3 = -39.68 / 3 = -13.226667
    #   theta = (0.06 + 0.0566, 0.14 + 0.13226667) = (0.1166, 0.27226667)
    #   predictions 0.38886667, 0.66113333, 0.9334; residuals -2.61113333, -5.33886667, -8.0666
    #   cost (6.81801728 + 28.50349728 + 65.07003556) / 6 = 16.731925
    reg = RingPriceRegressor(
        learning_rate=0.01, max_iterations=2, tolerance=0, feature_scaling=False
    ).fit(TOY_X, TOY_Y)
    assert reg.silver_price_ == pytest.approx(0.1166, rel=1e-12)
    assert reg.gold_price_per_carat_ == pytest.approx(0.14 + 0.3968 / 3, rel=1e-12)
    # Iteration 0 is the start: J(0, 0) = (9 + 36 + 81) / 6 = 21.
    assert reg.cost_history_.iterations == [0, 1, 2]
    assert reg.cost_history_.cost == pytest.approx([21.0, 112.466 / 6, 16.731925021], rel=1e-10)
    assert reg.cost_history_.path[0] == (0.0, 0.0)
    assert reg.n_iter_ == 2
    assert reg.converged_ is False


def test_article_run_seed_is_stable_and_matches_reference_loop() -> None:
    x, y = article_shaped_data(seed=2)
    reg = RingPriceRegressor(
        learning_rate=0.01, max_iterations=1000, tolerance=0, feature_scaling=False
    ).fit(x, y)
    # 0.01 is close to the stability limit for carats in 0..25; this draw is just inside it.
    assert 0.01 < reg.max_stable_learning_rate_ < 0.0105
    silver, gold, history = article_loop(x, y, 0.01, 1000)
    assert reg.silver_price_ == pytest.approx(silver, rel=1e-9)
    assert reg.gold_price_per_carat_ == pytest.approx(gold, rel=1e-9)
    assert reg.n_iter_ == 1000
    # The start and 1,000 iterations, kept as 1,000 evenly spread points: both ends stay.
    kept = reg.cost_history_.iterations
    assert len(kept) == 1000 and kept[0] == 0 and kept[-1] == 1000
    expected = [history[i - 1] for i in kept[1:]]
    np.testing.assert_allclose(reg.cost_history_.cost[1:], expected, rtol=1e-9)
    # The run lands near the article's kind of answer: silver ~ $30, gold ~ $50 per carat.
    assert 0 < reg.silver_price_ < 45
    assert 45 < reg.gold_price_per_carat_ < 55
    assert reg.predict([15.0])[0] == pytest.approx(silver + 15 * gold, rel=1e-9)


def test_article_rate_refused_on_a_draw_where_it_diverges() -> None:
    x, y = article_shaped_data(seed=0)
    stats = SufficientStats.from_arrays(x, y)
    limit = Quadratic.from_stats(stats, FeatureSpace.raw()).max_stable_rate()
    assert limit < 0.01
    # The reference loop really does blow up at this rate.
    _, _, history = article_loop(x, y, 0.01, 200)
    assert history[-1] > 1e6 * history[0]
    with pytest.raises(DivergenceError) as caught:
        RingPriceRegressor(
            learning_rate=0.01, max_iterations=1000, tolerance=0, feature_scaling=False
        ).fit(x, y)
    assert caught.value.max_stable_learning_rate == pytest.approx(limit, rel=1e-12)
    assert f"{limit:.6g}" in str(caught.value)
