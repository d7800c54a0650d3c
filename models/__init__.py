"""The learning core: fit ``price = silver_price + gold_price_per_carat * carats``.

Pure numpy (and scipy for the Student t quantile); no I/O and nothing from ``app/``. The
sales are reduced to :class:`SufficientStats` (one SQL row, mergeable by addition), on which
batch gradient descent costs O(1) per iteration; :class:`RingPriceRegressor` is the
scikit-learn style estimator on top, with mini-batch and stochastic descent over row chunks.

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
