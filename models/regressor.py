"""The ring price estimator: ``price = silver_price + gold_price_per_carat * carats``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.descent import (
    ChunkSource,
    DescentResult,
    FeatureSpace,
    Quadratic,
    Stability,
    row_curvature,
    run_batch,
    run_stochastic,
)
from models.errors import ConvergenceWarning, InvalidParameterError, NotFittedError
from models.history import CostHistory
from models.params import HYPERPARAMETERS, Hyperparameters, defaults, resolve_hyperparameters
from models.report import FitReport, QuoteLine, build_report, prediction_interval
from models.serialization import regressor_from_dict, regressor_to_dict
from models.stats import SufficientStats, check_fittable
from models.validation import as_sales_arrays, carats_to_price, check_priceable, finite_float

__all__ = ["RingPriceRegressor"]


def _relative_gap(value: float, best: float, scale: float) -> float:
    # A price near 0 is the cancellation of much larger terms, so "relative" is taken to a
    # floor of 1e-6 of those terms' size rather than to the (meaningless) tiny value.
    denominator = max(abs(best), 1e-6 * scale, 1e-300)
    return min(abs(value - best) / denominator, 1e300)


class RingPriceRegressor:
    """Learn the silver price and the gold price per carat of rings by gradient descent.

    The model is ``price = silver_price + gold_price_per_carat * carats``, fitted by
    minimising ``J = 1/(2m) sum (silver + gold * carats - price)^2``. As in scikit-learn,
    ``__init__`` only stores the keyword-only hyperparameters and ``fit`` validates them
    against the table in :mod:`models.params`.

    With the defaults the carats and prices are standardised (centred on their means and
    divided by their standard deviations, which is always advisable), the step size is the
    optimal constant rate ``2 / (lambda_min + lambda_max)`` computed from the exact Hessian,
    and the run stops when the gradient norm is at most ``tolerance``: the result is the
    least-squares optimum to rounding. The article's plain algorithm is
    ``learning_rate=0.01, max_iterations=1000, tolerance=0, feature_scaling=False``.

    Parameters
    ----------
    learning_rate : "auto" or float, default "auto"
        Step size in the working feature space (standardised or raw). A rate at or above
        ``2 / lambda_max`` raises :class:`DivergenceError` naming the largest stable rate.
        For mini-batch and stochastic descent it is the initial step, which then decays.
    max_iterations : int or None, default None
        Batch iteration budget (10,000 when None); with ``tolerance=0`` exactly this many run.
    tolerance : float, default 1e-10
        Stop when the gradient norm in the working space is at most this; 0 never stops early.
    feature_scaling : bool, default True
        Work in the standardised space; False is the article's raw space.
    method : {"batch", "minibatch", "sgd"}, default "batch"
        Full-batch descent (needs only the sufficient statistics), or mini-batch / stochastic
        descent over rows.
    batch_size : int or None, default None
        Rows per mini-batch (32 when None); ``method="sgd"`` means 1.
    epochs : int or None, default None
        Passes over the rows for mini-batch and stochastic descent (50 when None).
    random_seed : int or None, default None
        Seed of the row shuffling; the same seed gives the same fit.

    Attributes
    ----------
    silver_price_, gold_price_per_carat_ : float
        The learned prices (dollars, dollars per carat).
    n_iter_ : int
        Parameter updates made.
    converged_ : bool
        Whether the final gradient norm is at or below ``tolerance``.
    gradient_norm_ : float
        Final gradient norm in the working feature space.
    learning_rate_ : float
        The (initial) step size used.
    max_stable_learning_rate_ : float
        ``2 / lambda_max`` of the cost's Hessian in the working feature space.
    optimum_ : tuple of float
        ``(silver, gold)`` from the closed-form solution of the normal equations.
    optimum_gap_ : float
        Largest relative distance of the two prices to ``optimum_`` (see :meth:`fit`).
    cost_history_ : CostHistory
        Cost after selected updates (per epoch for the stochastic methods).
    report_ : FitReport
        Error measures, standard errors and confidence intervals.
    stats_ : SufficientStats
        The statistics the fit used.

    Examples
    --------
    >>> reg = RingPriceRegressor().fit([1, 2, 3], [150, 250, 250])
    >>> round(reg.silver_price_, 4), round(reg.gold_price_per_carat_, 4), reg.converged_
    (116.6667, 50.0, True)
    >>> reg.predict([15]).round(2).tolist()
    [866.67]
    >>> plain = RingPriceRegressor(learning_rate=0.01, max_iterations=2, tolerance=0,
    ...                            feature_scaling=False).fit([1, 2, 3], [3, 6, 9])
    >>> round(plain.gold_price_per_carat_, 6), plain.n_iter_
    (0.272267, 2)
    """

    # Set by fit (and from_dict); absent until then, which is how _check_fitted tells.
    silver_price_: float
    gold_price_per_carat_: float
    n_iter_: int
    converged_: bool
    gradient_norm_: float
    learning_rate_: float
    max_stable_learning_rate_: float
    optimum_: tuple[float, float]
    optimum_gap_: float
    cost_history_: CostHistory
    report_: FitReport
    stats_: SufficientStats

    def __init__(
        self,
        *,
        learning_rate: float | str = "auto",
        max_iterations: int | None = None,
        tolerance: float = 1e-10,
        feature_scaling: bool = True,
        method: str = "batch",
        batch_size: int | None = None,
        epochs: int | None = None,
        random_seed: int | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.max_iterations = max_iterations
        self.tolerance = tolerance
        self.feature_scaling = feature_scaling
        self.method = method
        self.batch_size = batch_size
        self.epochs = epochs
        self.random_seed = random_seed

    # ---- scikit-learn style parameter access --------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters as passed to ``__init__``.

        Examples
        --------
        >>> RingPriceRegressor(tolerance=0).get_params()["tolerance"]
        0
        """
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    def set_params(self, **params: Any) -> Self:
        """Set hyperparameters by name (validated at the next ``fit``)."""
        for name, value in params.items():
            if name not in HYPERPARAMETERS:
                raise InvalidParameterError(
                    f"unknown parameter {name!r}; valid: {', '.join(HYPERPARAMETERS)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        default = defaults()
        changed = {k: v for k, v in self.get_params().items() if v != default[k]}
        inner = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"RingPriceRegressor({inner})"

    def _hyperparameters(self) -> Hyperparameters:
        return resolve_hyperparameters(self.get_params())

    # ---- fitting ------------------------------------------------------------------------

    def fit(self, carats: ArrayLike, prices: ArrayLike) -> Self:
        """Fit to sales given as two arrays.

        Batch descent reduces the rows to :class:`SufficientStats` first; mini-batch and
        stochastic descent shuffle all rows with the seeded generator each epoch. The mean
        absolute error is computed from the rows.

        ``optimum_gap_`` is ``max |p - p*| / max(|p*|, 1e-6 * scale)`` over the two prices,
        with ``scale`` the size of the terms the price is computed from (``std_y / std_x``
        for gold, ``|mean_y| + |gold* mean_x|`` for silver): plain relative error unless the
        optimal price is itself a near-cancellation.

        Parameters
        ----------
        carats, prices : array_like
            Equal-length one-dimensional sequences; finite; carats > 0.

        Returns
        -------
        self

        Raises
        ------
        NoSalesError, DegenerateDataError, NonFiniteDataError, MismatchedLengthError,
        NonPositiveCaratsError, InvalidParameterError, DivergenceError
        """
        hp = self._hyperparameters()
        x, y = as_sales_arrays(carats, prices)
        stats = SufficientStats.from_arrays(x, y)

        def rows() -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
            return [(x, y)]

        if hp.method == "batch":
            self._fit_batch(stats, hp)
        else:
            self._fit_stochastic(stats, rows, hp)
        self.report_ = self.report_.with_mae(self._mean_absolute_error(rows, stats.n))
        return self

    def fit_stats(self, stats: SufficientStats, *, mae: float | None = None) -> Self:
        """Fit by batch descent from sufficient statistics alone (O(1) per iteration).

        Parameters
        ----------
        stats : SufficientStats
        mae : float, optional
            Mean absolute error, if the caller measured it; it cannot come from the sums.

        Examples
        --------
        >>> s = SufficientStats.from_sums(n=3, shift_x=2.0, shift_y=200.0, sum_x=0.0,
        ...                               sum_y=50.0, sum_xx=2.0, sum_xy=100.0,
        ...                               sum_yy=7500.0)
        >>> reg = RingPriceRegressor().fit_stats(s)
        >>> round(reg.silver_price_, 6), round(reg.gold_price_per_carat_, 6)
        (116.666667, 50.0)
        """
        hp = self._hyperparameters()
        if hp.method != "batch":
            raise InvalidParameterError(
                f"method {hp.method!r} needs the rows: use fit or fit_chunks; "
                "fit_stats supports method 'batch' only"
            )
        self._fit_batch(stats, hp)
        if mae is not None:
            self.report_ = self.report_.with_mae(mae)
        return self

    def fit_chunks(
        self, stats: SufficientStats, chunks: ChunkSource, *, measure_mae: bool = True
    ) -> Self:
        """Fit from rows streamed in chunks, with bounded memory.

        Parameters
        ----------
        stats : SufficientStats
            Statistics of exactly the rows the chunks yield (used for scaling, the exact
            per-epoch cost and the report).
        chunks : callable
            Called once per epoch (and once more to measure the mean absolute error); returns
            an iterable of ``(carats, prices)`` array pairs. Rows are shuffled within each
            chunk by the seeded generator. With ``method="batch"`` the descent needs only
            ``stats`` and the chunks are read once, for the mean absolute error.
        measure_mae : bool, default True
            False leaves ``report_.mae`` None and saves that last pass over the chunks, for
            a caller that measures the error itself.

        Examples
        --------
        >>> x = np.linspace(1.0, 20.0, 400)
        >>> y = 30.0 + 50.0 * x
        >>> def chunks():
        ...     return ((x[i:i + 100], y[i:i + 100]) for i in range(0, 400, 100))
        >>> reg = RingPriceRegressor(method="minibatch", random_seed=0)
        >>> reg = reg.fit_chunks(SufficientStats.from_arrays(x, y), chunks)
        >>> abs(reg.gold_price_per_carat_ - 50.0) < 0.05, reg.report_.mae < 0.5
        (True, True)
        """
        hp = self._hyperparameters()
        if hp.method == "batch":
            self._fit_batch(stats, hp)
        else:
            self._fit_stochastic(stats, chunks, hp)
        if measure_mae:
            self.report_ = self.report_.with_mae(self._mean_absolute_error(chunks, stats.n))
        return self

    def _mean_absolute_error(self, chunks: ChunkSource, n: int) -> float:
        total = 0.0
        for raw_x, raw_y in chunks():
            x, y = as_sales_arrays(raw_x, raw_y)
            with np.errstate(over="ignore", invalid="ignore"):
                residual = y - (self.silver_price_ + self.gold_price_per_carat_ * x)
                total += float(np.abs(residual).sum())
        return total / n

    def _feature_space(self, stats: SufficientStats, hp: Hyperparameters) -> FeatureSpace:
        return FeatureSpace.standardised(stats) if hp.feature_scaling else FeatureSpace.raw()

    def _fit_batch(self, stats: SufficientStats, hp: Hyperparameters) -> None:
        check_fittable(stats)
        space = self._feature_space(stats, hp)
        q = Quadratic.from_stats(stats, space)
        rate = q.optimal_rate() if hp.learning_rate is None else hp.learning_rate
        result = run_batch(
            q,
            space,
            learning_rate=rate,
            max_iterations=hp.max_iterations,
            tolerance=hp.tolerance,
        )
        if hp.tolerance > 0 and not result.converged:
            warnings.warn(
                f"gradient descent stopped after {result.n_iter} iterations with gradient "
                f"norm {result.gradient_norm:.3g} > tolerance {hp.tolerance:.3g}; "
                "raise max_iterations, or use feature_scaling=True",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._set_learned_attributes(stats, space, q, result)

    def _fit_stochastic(
        self, stats: SufficientStats, chunks: ChunkSource, hp: Hyperparameters
    ) -> None:
        check_fittable(stats)
        space = self._feature_space(stats, hp)
        q = Quadratic.from_stats(stats, space)
        bs = hp.batch_size
        stability = Stability.stochastic(q, row_curvature(chunks, space), bs)
        rate = hp.learning_rate
        if rate is None:
            # Gradient noise shrinks with the batch size, and so can the damping of the step:
            # about a tenth of the optimal batch rate for single rows, nearly all of it for
            # large batches; and never past half the limit a sale far from the rest sets.
            rate = min(q.optimal_rate() * bs / (bs + 8.0), 0.5 * stability.limit)
        result = run_stochastic(
            q,
            space,
            chunks,
            n_rows=stats.n,
            stability=stability,
            learning_rate=rate,
            batch_size=hp.batch_size,
            epochs=hp.epochs,
            tolerance=hp.tolerance,
            rng=np.random.default_rng(hp.random_seed),
        )
        self._set_learned_attributes(stats, space, q, result)

    def _set_learned_attributes(
        self, stats: SufficientStats, space: FeatureSpace, q: Quadratic, result: DescentResult
    ) -> None:
        fitted_silver, fitted_gold = space.to_prices(result.theta0, result.theta1)
        silver = finite_float(fitted_silver, "the fitted silver price")
        gold = finite_float(fitted_gold, "the fitted gold price per carat")
        best_gold = stats.sxy / stats.sxx
        best_silver = stats.mean_y - best_gold * stats.mean_x
        gold_scale = stats.std_y / stats.std_x
        silver_scale = abs(stats.mean_y) + abs(best_gold * stats.mean_x)
        self.silver_price_ = silver
        self.gold_price_per_carat_ = gold
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.gradient_norm_ = float(result.gradient_norm)
        self.learning_rate_ = float(result.learning_rate)
        self.max_stable_learning_rate_ = float(result.max_stable_rate)
        self.optimum_ = (float(best_silver), float(best_gold))
        self.optimum_gap_ = float(
            max(
                _relative_gap(silver, best_silver, silver_scale),
                _relative_gap(gold, best_gold, gold_scale),
            )
        )
        path_silver, path_gold = space.to_prices(result.path0, result.path1)
        self.cost_history_ = CostHistory.downsampled(
            result.iterations, result.costs, path_silver, path_gold
        )
        self.report_ = build_report(stats, silver, gold)
        self.stats_ = stats

    # ---- prediction ---------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "silver_price_"):
            raise NotFittedError(
                "this RingPriceRegressor is not fitted yet: call fit, fit_stats or fit_chunks first"
            )

    def predict(self, carats: ArrayLike) -> NDArray[np.float64]:
        """Predicted prices, same shape as ``carats``.

        Examples
        --------
        >>> RingPriceRegressor().fit([1, 2, 3], [150, 250, 250]).predict([0.0, 2.0]).round(4)
        array([116.6667, 216.6667])
        """
        self._check_fitted()
        x = carats_to_price(carats)
        with np.errstate(over="ignore", invalid="ignore"):
            price = np.asarray(self.silver_price_ + self.gold_price_per_carat_ * x)
        check_priceable(price, "prediction")
        return price

    def prediction_interval(
        self, carats: ArrayLike, level: float = 0.95
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """``level`` prediction interval ``(low, high)`` for new rings; None when ``n <= 2``.

        Examples
        --------
        >>> reg = RingPriceRegressor().fit([1, 2, 3, 4], [150, 250, 250, 380])
        >>> low, high = reg.prediction_interval([2.5])
        >>> bool(low[0] < reg.predict([2.5])[0] < high[0])
        True
        """
        self._check_fitted()
        return prediction_interval(
            self.stats_, self.silver_price_, self.gold_price_per_carat_, carats, level
        )

    def quote_line(self, level: float = 0.95) -> QuoteLine:
        """The fitted line's quotes and ``level`` prediction intervals, ready to compute
        many times: what a server keeps for the model it serves.

        Examples
        --------
        >>> line = RingPriceRegressor().fit([1, 2, 3, 4], [150, 250, 250, 380]).quote_line()
        >>> round(line.price(2.5), 2)
        257.5
        """
        self._check_fitted()
        return QuoteLine.of(self.stats_, self.silver_price_, self.gold_price_per_carat_, level)

    # ---- serialisation ------------------------------------------------------------------

    def to_dict(self, *, serving: bool = False) -> dict[str, Any]:
        """JSON-safe description of the fitted model (str, int, float, bool, None, list, dict),
        in the format :mod:`models.serialization` names; with ``serving``, without the cost
        history and the report (see there).

        Examples
        --------
        >>> import json
        >>> reg = RingPriceRegressor().fit([1, 2, 3], [150, 250, 250])
        >>> again = RingPriceRegressor.from_dict(json.loads(json.dumps(reg.to_dict())))
        >>> again.predict([15.0]).tolist() == reg.predict([15.0]).tolist()
        True
        """
        self._check_fitted()
        return regressor_to_dict(self, serving=serving)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a fitted regressor from :meth:`to_dict` output.

        Raises
        ------
        InvalidParameterError
            If the dict is not a serialised regressor of a known format.
        """
        return regressor_from_dict(cls, data)
