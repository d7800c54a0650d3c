"""Fit report, prediction intervals and cost history."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from models import CostHistory, FitReport, InvalidParameterError, RingPriceRegressor


def ols_by_rows(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict:
    """Textbook OLS inference computed directly from the rows."""
    n = x.size
    design = np.column_stack([np.ones(n), x])
    (silver, gold), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - (silver + gold * x)
    sse = float(residual @ residual)
    s = math.sqrt(sse / (n - 2))
    cov = s**2 * np.linalg.inv(design.T @ design)
    q = scipy_stats.t.ppf(0.5 + level / 2, n - 2)
    return {
        "silver": silver,
        "gold": gold,
        "sse": sse,
        "mae": float(np.mean(np.abs(residual))),
        "r2": 1 - sse / float(np.sum((y - y.mean()) ** 2)),
        "rse": s,
        "se": np.sqrt(np.diag(cov)),
        "q": q,
        "cov": cov,
    }


@pytest.fixture(scope="module")
def noisy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    x = rng.uniform(1.0, 25.0, 60)
    return x, 30.0 + 50.0 * x + rng.normal(0.0, 20.0, x.size)


def test_report_matches_textbook_ols(noisy) -> None:
    x, y = noisy
    reg = RingPriceRegressor().fit(x, y)
    ref = ols_by_rows(x, y)
    r = reg.report_
    assert r.n_samples == 60
    assert r.mse == pytest.approx(ref["sse"] / 60, rel=1e-9)
    assert r.cost == pytest.approx(ref["sse"] / 120, rel=1e-9)
    assert r.rmse == pytest.approx(math.sqrt(ref["sse"] / 60), rel=1e-9)
    assert r.mae == pytest.approx(ref["mae"], rel=1e-9)
    assert r.r2 == pytest.approx(ref["r2"], rel=1e-9)
    assert r.residual_std_error == pytest.approx(ref["rse"], rel=1e-9)
    assert r.silver_std_error == pytest.approx(ref["se"][0], rel=1e-9)
    assert r.gold_std_error == pytest.approx(ref["se"][1], rel=1e-9)
    half = ref["q"] * ref["se"]
    assert r.silver_ci == pytest.approx((ref["silver"] - half[0], ref["silver"] + half[0]))
    assert r.gold_ci == pytest.approx((ref["gold"] - half[1], ref["gold"] + half[1]))
    assert r.level == 0.95


def test_prediction_interval_matches_textbook(noisy) -> None:
    x, y = noisy
    reg = RingPriceRegressor().fit(x, y)
    ref = ols_by_rows(x, y, level=0.9)
    x0 = np.array([0.5, 12.0, 40.0])
    low, high = reg.prediction_interval(x0, level=0.9)
    design0 = np.column_stack([np.ones(3), x0])
    var_mean = np.einsum("ij,jk,ik->i", design0, ref["cov"], design0)
    half = ref["q"] * np.sqrt(ref["rse"] ** 2 + var_mean)
    centre = reg.predict(x0)
    np.testing.assert_allclose(low, centre - half, rtol=1e-9)
    np.testing.assert_allclose(high, centre + half, rtol=1e-9)
    # Wider far from the data than at its centre.
    assert (high - low)[2] > (high - low)[1]


def test_three_sales_report_by_hand() -> None:
    # Residuals at (116.67, 50): 150-166.67, 250-216.67, 250-266.67 = -16.67, 33.33, -16.67
    # SSE = 277.78 + 1111.11 + 277.78 = 1666.67; Syy = 6666.67; R^2 = 0.75
    # s = sqrt(1666.67 / 1) = 40.82; Sxx = 2; se(gold) = 40.82 / sqrt(2) = 28.87
    reg = RingPriceRegressor().fit([1, 2, 3], [150, 250, 250])
    r = reg.report_
    assert r.cost == pytest.approx(1666.6666667 / 6, rel=1e-9)
    assert r.r2 == pytest.approx(0.75, rel=1e-12)
    assert r.residual_std_error == pytest.approx(math.sqrt(5000 / 3), rel=1e-12)
    assert r.gold_std_error == pytest.approx(math.sqrt(5000 / 3) / math.sqrt(2), rel=1e-12)
    assert r.mae == pytest.approx(200 / 9, rel=1e-12)


def test_two_sales_have_no_intervals() -> None:
    reg = RingPriceRegressor().fit([1.0, 3.0], [100.0, 200.0])
    r = reg.report_
    assert r.residual_std_error is None
    assert r.silver_std_error is None and r.gold_std_error is None
    assert r.silver_ci is None and r.gold_ci is None
    assert r.r2 == pytest.approx(1.0)
    assert reg.prediction_interval([2.0]) is None
    assert json.loads(json.dumps(r.to_dict()))["gold_ci"] is None


def test_constant_prices_give_finite_r2() -> None:
    reg = RingPriceRegressor().fit([1.0, 2.0, 3.0], [100.0, 100.0, 100.0])
    assert reg.gold_price_per_carat_ == 0.0
    assert reg.silver_price_ == 100.0
    assert reg.report_.r2 == 1.0
    assert reg.report_.residual_std_error == 0.0


def test_sse_accurate_on_clustered_carats() -> None:
    rng = np.random.default_rng(9)
    x = rng.uniform(999.5, 1000.5, 5000)
    y = 30.0 + 50.0 * x + rng.normal(0.0, 0.01, x.size)
    reg = RingPriceRegressor().fit(x, y)
    ref = ols_by_rows(x - 1000.0, y - 50030.0)  # centred: lstsq is accurate there
    assert reg.report_.mse == pytest.approx(ref["sse"] / x.size, rel=1e-6)
    assert reg.report_.mse > 0.0


def test_with_mae_and_dict_round_trip(noisy) -> None:
    x, y = noisy
    report = RingPriceRegressor().fit_stats(RingPriceRegressor().fit(x, y).stats_, mae=3.5).report_
    assert report.mae == 3.5
    assert report.with_mae(None).mae is None
    again = FitReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    with pytest.raises(ValueError, match="mae must be a finite number >= 0"):
        report.with_mae(-1.0)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, "high", True])
def test_bad_level_refused(noisy, level) -> None:
    reg = RingPriceRegressor().fit(*noisy)
    with pytest.raises(InvalidParameterError, match="level must be a number strictly between"):
        reg.prediction_interval([2.0], level=level)


def test_cost_history_downsampling_keeps_ends() -> None:
    short = CostHistory.downsampled(range(1, 11), [float(k) for k in range(10)])
    assert short.iterations == list(range(1, 11))
    long = CostHistory.downsampled(range(1, 100_001), np.linspace(1.0, 0.0, 100_000).tolist())
    assert len(long) == 1000
    assert long.iterations[0] == 1 and long.iterations[-1] == 100_000
    assert long.cost[0] == 1.0 and long.cost[-1] == 0.0
    assert all(a < b for a, b in zip(long.iterations, long.iterations[1:], strict=False))
    assert CostHistory.downsampled([], []).to_dict() == {"iterations": [], "cost": [], "path": []}
    with pytest.raises(InvalidParameterError, match="one cost per iteration"):
        CostHistory(iterations=[1, 2], cost=[1.0])
    with pytest.raises(InvalidParameterError, match="one point of the path per iteration"):
        CostHistory(iterations=[1, 2], cost=[1.0, 0.5], path=[(1.0, 2.0)])
