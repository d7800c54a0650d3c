"""A fitted :class:`~models.regressor.RingPriceRegressor` as JSON-safe data, and back.

The format is named by its ``"format"`` key; model versions stored in databases hold it, so
a change to what :func:`regressor_to_dict` writes needs a new format name, and
:func:`regressor_from_dict` must keep reading every earlier one. :data:`SERIAL_FORMAT` is
everything; :data:`SERVING_FORMAT` leaves out the cost history and the fit report, for a
store that keeps those elsewhere: the report is rebuilt from the statistics (all but the
mean absolute error, which needs the rows) and the history is empty. Reading checks
everything it rebuilds and refuses a malformed or inconsistent dict with
:class:`InvalidParameterError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from models.errors import InvalidParameterError, ModelError
from models.history import CostHistory
from models.params import plain_params, resolve_hyperparameters
from models.report import FitReport, build_report
from models.stats import SufficientStats
from models.validation import finite_float

if TYPE_CHECKING:
    from models.regressor import RingPriceRegressor

__all__ = ["SERIAL_FORMAT", "SERVING_FORMAT", "regressor_from_dict", "regressor_to_dict"]

SERIAL_FORMAT = "ring-price-regressor/1"
SERVING_FORMAT = "ring-price-regressor/serving-1"

Regressor = TypeVar("Regressor", bound="RingPriceRegressor")


def regressor_to_dict(reg: RingPriceRegressor, *, serving: bool = False) -> dict[str, Any]:
    """Hyperparameters, learned attributes, report and statistics of a fitted regressor,
    as str, int, float, bool, None, list and dict only; with ``serving``, only what predicts
    and bounds its quotes (no cost history, no report)."""
    data = {
        "format": SERIAL_FORMAT,
        "params": plain_params(reg.get_params()),
        "silver_price": reg.silver_price_,
        "gold_price_per_carat": reg.gold_price_per_carat_,
        "n_iter": reg.n_iter_,
        "converged": reg.converged_,
        "gradient_norm": reg.gradient_norm_,
        "learning_rate": reg.learning_rate_,
        "max_stable_learning_rate": reg.max_stable_learning_rate_,
        "optimum": list(reg.optimum_),
        "optimum_gap": reg.optimum_gap_,
        "cost_history": reg.cost_history_.to_dict(),
        "report": reg.report_.to_dict(),
        "stats": reg.stats_.to_dict(),
    }
    if serving:
        del data["cost_history"], data["report"]
        data["format"] = SERVING_FORMAT
    return data


def regressor_from_dict(cls: type[Regressor], data: Mapping[str, Any]) -> Regressor:
    """Rebuild a fitted ``cls`` from :func:`regressor_to_dict` output.

    Raises
    ------
    InvalidParameterError
        If ``data`` is not a serialised regressor of a known format, or any part of it is
        malformed or invalid.
    """
    if not isinstance(data, Mapping) or data.get("format") not in (SERIAL_FORMAT, SERVING_FORMAT):
        found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise InvalidParameterError(
            f"not a serialised RingPriceRegressor: expected format {SERIAL_FORMAT!r} or "
            f"{SERVING_FORMAT!r}, got {found!r}"
        )
    whole = data["format"] == SERIAL_FORMAT
    try:
        reg = cls(**dict(data["params"]))
        resolve_hyperparameters(reg.get_params())
        reg.silver_price_ = finite_float(data["silver_price"], "silver_price")
        reg.gold_price_per_carat_ = finite_float(
            data["gold_price_per_carat"], "gold_price_per_carat"
        )
        reg.n_iter_ = int(data["n_iter"])
        reg.converged_ = bool(data["converged"])
        reg.gradient_norm_ = float(data["gradient_norm"])
        reg.learning_rate_ = float(data["learning_rate"])
        reg.max_stable_learning_rate_ = float(data["max_stable_learning_rate"])
        best_silver, best_gold = data["optimum"]
        reg.optimum_ = (float(best_silver), float(best_gold))
        reg.optimum_gap_ = float(data["optimum_gap"])
        reg.stats_ = SufficientStats.from_dict(data["stats"])
        if whole:
            reg.cost_history_ = CostHistory.from_dict(data["cost_history"])
            reg.report_ = FitReport.from_dict(data["report"])
        else:
            reg.cost_history_ = CostHistory(iterations=[], cost=[])
            reg.report_ = build_report(reg.stats_, reg.silver_price_, reg.gold_price_per_carat_)
    except InvalidParameterError:
        raise
    except ModelError as exc:
        raise InvalidParameterError(f"serialised regressor is invalid: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidParameterError(f"serialised regressor is malformed: {exc!r}") from None
    return reg
