"""Exceptions and warnings raised by the learning core.

Every exception derives from :class:`ModelError`, itself a :class:`ValueError`, and its
``str()`` is a one-line message a person can act on, so the service can show it as is.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DegenerateDataError",
    "DivergenceError",
    "InvalidDataError",
    "InvalidParameterError",
    "MismatchedLengthError",
    "ModelError",
    "NoSalesError",
    "NonFiniteDataError",
    "NonPositiveCaratsError",
    "NotFittedError",
]


class ModelError(ValueError):
    """Base class of every error raised by :mod:`models`."""


class InvalidDataError(ModelError):
    """The sales data cannot be fitted (base class of the data errors)."""


class NoSalesError(InvalidDataError):
    """There are no sales at all."""


class DegenerateDataError(InvalidDataError):
    """Fewer than two distinct carat values: silver and gold cannot be told apart."""


class NonFiniteDataError(InvalidDataError):
    """A carat value, a price or a sum is NaN or infinite."""


class MismatchedLengthError(InvalidDataError):
    """Carats and prices (or rows and statistics) do not describe the same sales."""


class NonPositiveCaratsError(InvalidDataError):
    """A ring has zero or negative carats, which this product does not sell."""


class InvalidParameterError(ModelError):
    """A hyperparameter (or a serialised model) breaks a rule; the message names both.

    ``parameter`` is the hyperparameter's name when one is to blame.
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class NotFittedError(ModelError):
    """The estimator is used before ``fit``."""


class DivergenceError(ModelError):
    """The learning rate makes gradient descent diverge.

    Parameters
    ----------
    message : str
        The human-readable explanation.
    learning_rate : float
        The rate that was refused.
    max_stable_learning_rate : float
        ``2 / lambda_max``, the supremum of stable rates for this data in ``feature_space``.
    feature_space : str
        ``"raw"`` or ``"scaled"``: the space the two rates are measured in.

    Examples
    --------
    >>> err = DivergenceError("too fast", learning_rate=1.0, max_stable_learning_rate=0.5)
    >>> err.max_stable_learning_rate
    0.5
    """

    def __init__(
        self,
        message: str,
        *,
        learning_rate: float,
        max_stable_learning_rate: float,
        feature_space: str = "raw",
    ) -> None:
        super().__init__(message)
        self.learning_rate = learning_rate
        self.max_stable_learning_rate = max_stable_learning_rate
        self.feature_space = feature_space


class ConvergenceWarning(UserWarning):
    """Batch descent used its iteration budget before the gradient fell below the tolerance.

    As in scikit-learn, not converging is a warning and a flag (``converged_``), not an error:
    the prices are still the best the run found.
    """
