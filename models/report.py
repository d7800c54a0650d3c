"""How well a fitted line describes its sales: error measures, standard errors, intervals.

Everything except the mean absolute error comes from the sufficient statistics. The sum of
squared errors at any ``(silver, gold)`` is ``SSE* + Sxx (gold - gold*)^2 + n rbar^2``, with
``SSE* = Syy - Sxy^2 / Sxx`` from the centred sums and ``rbar`` the mean residual: no large
terms cancel, so it is accurate even when carats cluster far from zero. The standard errors
and intervals are the ordinary least-squares ones (Student t with ``n - 2`` degrees of
freedom), evaluated with the model's own residual standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# scipy.special's t quantile is the one scipy.stats.t.ppf calls, at a fraction of the import.
from scipy.special import stdtrit

from models.errors import InvalidParameterError, NonFiniteDataError
from models.stats import SufficientStats
from models.validation import carats_to_price, check_priceable

__all__ = [
    "FitReport",
    "QuoteLine",
    "build_report",
    "line_error",
    "prediction_interval",
    "sse_at",
    "t_quantile",
]


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise InvalidParameterError(
            f"level must be a number strictly between 0 and 1, got {level!r}"
        )
    return float(level)


def t_quantile(level: float, dof: int) -> float:
    """Two-sided Student t critical value: ``P(|T| <= q) = level`` for ``dof`` degrees.

    Examples
    --------
    >>> round(t_quantile(0.95, 1), 3)
    12.706
    """
    return float(stdtrit(dof, 0.5 + 0.5 * _check_level(level)))


def sse_at(stats: SufficientStats, silver: float, gold: float) -> float:
    """Sum of squared errors of the line ``silver + gold * x`` over the sales.

    Examples
    --------
    >>> s = SufficientStats.from_arrays([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
    >>> round(sse_at(s, 350.0 / 3.0, 50.0), 6), round(sse_at(s, 0.0, 0.0), 6)
    (1666.666667, 147500.0)
    """
    sxx = stats.sxx
    slope = stats.sxy / sxx
    best = max(stats.syy - stats.sxy * slope, 0.0)
    rbar = silver + gold * stats.mean_x - stats.mean_y
    d = gold - slope
    return best + sxx * d * d + stats.n * rbar * rbar


def line_error(stats: SufficientStats, silver: float, gold: float) -> tuple[float, float] | None:
    """Root mean squared error and mean residual (price minus quote) of a line on any sales,
    one of them included: None when there are none.

    Unlike :func:`sse_at` this needs no spread in the carats, so it also measures a fitted
    line on the few sales that came after it.

    Examples
    --------
    >>> s = SufficientStats.from_arrays([2.0, 2.0], [110.0, 130.0])
    >>> line_error(s, 20.0, 40.0)  # residuals 10 and 30
    (22.360679774997898, 20.0)
    """
    n = stats.n
    if n == 0:
        return None
    mean_residual = stats.mean_y - silver - gold * stats.mean_x
    # The spread of the residuals from the centred sums, plus their mean: nothing large cancels.
    spread = max(stats.syy - 2.0 * gold * stats.sxy + gold * gold * stats.sxx, 0.0)
    return math.sqrt(spread / n + mean_residual * mean_residual), mean_residual


@dataclass(frozen=True, slots=True)
class FitReport:
    """Error measures and uncertainty of a fitted line.

    Attributes
    ----------
    n_samples : int
    cost : float
        The article's ``J = SSE / (2n)``.
    mse, rmse : float
        Mean squared error ``SSE / n`` and its square root.
    mae : float or None
        Mean absolute error; needs the rows, so None when fitted from statistics alone.
    r2 : float
        ``1 - SSE / Syy``; with constant prices 1.0 for an exact fit and 0.0 otherwise.
    residual_std_error : float or None
        ``sqrt(SSE / (n - 2))``; None when ``n <= 2`` (no degrees of freedom).
    silver_std_error, gold_std_error : float or None
        Standard errors of the two prices.
    silver_ci, gold_ci : tuple of float or None
        ``level`` confidence intervals ``(low, high)``.
    level : float
        Confidence level of the intervals.

    Examples
    --------
    >>> s = SufficientStats.from_arrays([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
    >>> r = build_report(s, 350.0 / 3.0, 50.0)
    >>> round(r.r2, 4), round(r.residual_std_error, 4), round(r.gold_std_error, 4)
    (0.75, 40.8248, 28.8675)
    >>> r.with_mae(22.2).mae
    22.2
    """

    n_samples: int
    cost: float
    mse: float
    rmse: float
    mae: float | None
    r2: float
    residual_std_error: float | None
    silver_std_error: float | None
    gold_std_error: float | None
    silver_ci: tuple[float, float] | None
    gold_ci: tuple[float, float] | None
    level: float = 0.95

    def with_mae(self, mae: float | None) -> FitReport:
        """A copy with the mean absolute error filled in."""
        if mae is not None:
            mae = float(mae)
            if not (math.isfinite(mae) and mae >= 0.0):
                raise NonFiniteDataError(f"mae must be a finite number >= 0, got {mae!r}")
        return replace(self, mae=mae)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (intervals as two-element lists)."""
        data = asdict(self)
        for key in ("silver_ci", "gold_ci"):
            if data[key] is not None:
                data[key] = [float(v) for v in data[key]]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitReport:
        """Inverse of :meth:`to_dict`."""
        try:
            values = dict(data)
            for key in ("silver_ci", "gold_ci"):
                if values[key] is not None:
                    low, high = values[key]
                    values[key] = (float(low), float(high))
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"fit report dict is malformed: {exc!r}") from None


def build_report(
    stats: SufficientStats,
    silver: float,
    gold: float,
    *,
    level: float = 0.95,
) -> FitReport:
    """Measure the line ``silver + gold * x`` against the sales summarised by ``stats``.

    ``stats`` must be fittable (``n >= 2`` with two distinct carat values). The mean absolute
    error needs the rows: :meth:`FitReport.with_mae` adds it.
    """
    level = _check_level(level)
    n = stats.n
    sse = sse_at(stats, silver, gold)
    mse = sse / n
    syy = stats.syy
    r2 = 1.0 - sse / syy if syy > 0.0 else 1.0 if sse == 0.0 else 0.0
    rse = silver_se = gold_se = None
    silver_ci = gold_ci = None
    if n > 2:
        rse = math.sqrt(sse / (n - 2))
        sxx = stats.sxx
        mean_x = stats.mean_x
        gold_se = rse / math.sqrt(sxx)
        silver_se = rse * math.sqrt(1.0 / n + mean_x * mean_x / sxx)
        q = t_quantile(level, n - 2)
        silver_ci = (silver - q * silver_se, silver + q * silver_se)
        gold_ci = (gold - q * gold_se, gold + q * gold_se)
    return FitReport(
        n_samples=n,
        cost=0.5 * mse,
        mse=mse,
        rmse=math.sqrt(mse),
        mae=None,
        r2=r2,
        residual_std_error=rse,
        silver_std_error=silver_se,
        gold_std_error=gold_se,
        silver_ci=silver_ci,
        gold_ci=gold_ci,
        level=level,
    )


@dataclass(frozen=True, slots=True)
class QuoteLine:
    """The quotes of a fitted line and their ``level`` prediction intervals, with everything
    that does not depend on the carats worked out once: a quote is then a few float
    operations, on a float (one quote) or on an array (many).

    The interval is ``price +- t * s * sqrt(1 + 1/n + (x0 - mean_x)^2 / Sxx)``, ``s`` the
    residual standard error and ``t`` the Student quantile with ``n - 2`` degrees of freedom;
    ``scale`` (``t * s``) is None when ``n <= 2``: with no degrees of freedom there is none.

    Examples
    --------
    >>> s = SufficientStats.from_arrays([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
    >>> line = QuoteLine.of(s, 350.0 / 3.0, 50.0)
    >>> round(line.price(2.0), 2), [round(b, 2) for b in line.bounds(2.0)]
    (216.67, [-382.31, 815.64])
    """

    silver: float
    gold: float
    level: float
    mean_x: float
    sxx: float
    base: float
    scale: float | None

    @classmethod
    def of(
        cls, stats: SufficientStats, silver: float, gold: float, level: float = 0.95
    ) -> QuoteLine:
        level = _check_level(level)
        n = stats.n
        scale = None
        if n > 2:
            scale = t_quantile(level, n - 2) * math.sqrt(sse_at(stats, silver, gold) / (n - 2))
        return cls(silver, gold, level, stats.mean_x, stats.sxx, 1.0 + 1.0 / max(n, 1), scale)

    def price(self, carats: Any) -> Any:
        """The quote for a float or for each element of an array (where numpy's overflow
        warnings are the caller's to silence)."""
        return self.silver + self.gold * carats

    def bounds(self, carats: Any) -> tuple[Any, Any]:
        """``(low, high)`` for a float or for each element of an array (``scale`` set)."""
        assert self.scale is not None
        d = carats - self.mean_x
        spread = self.base + d * d / self.sxx
        half = self.scale * (math.sqrt(spread) if isinstance(spread, float) else np.sqrt(spread))
        centre = self.price(carats)
        return centre - half, centre + half


def prediction_interval(
    stats: SufficientStats,
    silver: float,
    gold: float,
    carats: ArrayLike,
    level: float = 0.95,
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """Interval expected to hold the price of a *new* ring with probability ``level``
    (see :class:`QuoteLine`); None when ``n <= 2``.

    Examples
    --------
    >>> s = SufficientStats.from_arrays([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
    >>> low, high = prediction_interval(s, 350.0 / 3.0, 50.0, [2.0])
    >>> round(float(low[0]), 2), round(float(high[0]), 2)
    (-382.31, 815.64)
    """
    line = QuoteLine.of(stats, silver, gold, level)
    if line.scale is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        low, high = line.bounds(carats_to_price(carats))
    check_priceable(low, "interval")
    check_priceable(high, "interval")
    return np.asarray(low), np.asarray(high)
