"""The learning core: fit ``price = silver_price + gold_price_per_carat * carats``.

Pure numpy (and scipy for the Student t quantile); no I/O and nothing from ``app/``. The
sales are reduced to :class:`SufficientStats` (one SQL row, mergeable by addition), on which
batch gradient descent costs O(1) per iteration; :class:`RingPriceRegressor` is the
scikit-learn style estimator on top, with mini-batch and stochastic descent over row chunks.

One concern per module:

- ``stats``: :class:`SufficientStats`, the count and shifted sums a fit needs;
- ``validation``: checks of the numbers that come in (sales, carats to price, floats);
- ``params``: the table of hyperparameters, their defaults and accepted values;
- ``descent``: the cost in a feature space, batch and stochastic gradient descent;
- ``regressor``: :class:`RingPriceRegressor`, the estimator;
- ``report``: error measures, standard errors, confidence and prediction intervals;
- ``history``: the cost (and prices) after selected iterations, kept small;
- ``serialization``: a fitted regressor as JSON-safe data, and back;
- ``errors``: the exceptions and the warning the core raises.

Examples
--------
>>> from models import RingPriceRegressor, SufficientStats
>>> stats = SufficientStats.from_arrays([1, 2, 3], [150, 250, 250])
>>> reg = RingPriceRegressor().fit_stats(stats)
>>> round(reg.silver_price_, 2), round(reg.gold_price_per_carat_, 2)
(116.67, 50.0)
"""

from models.errors import (
    ConvergenceWarning,
    DegenerateDataError,
    DivergenceError,
    InvalidDataError,
    InvalidParameterError,
    MismatchedLengthError,
    ModelError,
    NonFiniteDataError,
    NonPositiveCaratsError,
    NoSalesError,
    NotFittedError,
)
from models.history import CostHistory
from models.regressor import RingPriceRegressor
from models.report import FitReport
from models.stats import SufficientStats

__all__ = [
    "ConvergenceWarning",
    "CostHistory",
    "DegenerateDataError",
    "DivergenceError",
    "FitReport",
    "InvalidDataError",
    "InvalidParameterError",
    "MismatchedLengthError",
    "ModelError",
    "NoSalesError",
    "NonFiniteDataError",
    "NonPositiveCaratsError",
    "NotFittedError",
    "RingPriceRegressor",
    "SufficientStats",
]
