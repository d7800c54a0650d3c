"""Checks of the numbers that come into the learning core, with messages that name the culprit.

Sales arrive as two arrays (carats and prices) to fit, carats arrive alone to be priced, and
single numbers arrive in statistics and serialised models. Each check here turns what it
accepts into float64 (arrays) or float, and refuses the rest with an :class:`InvalidDataError`
subclass whose message says which value is wrong and where.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.errors import (
    InvalidDataError,
    MismatchedLengthError,
    NonFiniteDataError,
    NonPositiveCaratsError,
)

__all__ = [
    "as_float_array",
    "as_sales_arrays",
    "carats_to_price",
    "check_priceable",
    "check_same_length",
    "finite_float",
]


def as_float_array(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """``values`` as a one-dimensional float64 array (no copy when it is one already).

    Examples
    --------
    >>> as_float_array([1, 2], "carats").tolist()
    [1.0, 2.0]
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"{name} must be numbers: {exc}") from None
    if array.ndim != 1:
        raise InvalidDataError(
            f"{name} must be a one-dimensional sequence, got shape {array.shape}"
        )
    return array


def check_same_length(carats: NDArray[np.float64], prices: NDArray[np.float64]) -> None:
    """Refuse carats and prices that cannot be the same sales."""
    if carats.shape != prices.shape:
        raise MismatchedLengthError(
            "carats and prices must have the same length, "
            f"got {carats.size} carats and {prices.size} prices"
        )


def _check_finite(array: NDArray[np.float64], name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise NonFiniteDataError(
            f"{name} contain {bad.size} non-finite value(s) (NaN or infinity), "
            f"first at index {int(bad[0])}: {array[bad[0]]!r}"
        )


def as_sales_arrays(
    carats: ArrayLike, prices: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate one batch of sales and return it as two float64 arrays.

    Parameters
    ----------
    carats, prices : array_like
        One-dimensional, same length, finite; carats strictly positive.

    Returns
    -------
    tuple of numpy.ndarray
        ``(carats, prices)`` as float64 (no copy when already float64).

    Raises
    ------
    MismatchedLengthError, NonFiniteDataError, NonPositiveCaratsError, InvalidDataError

    Examples
    --------
    >>> x, y = as_sales_arrays([1, 2], [150, 250])
    >>> x.dtype.name, y.tolist()
    ('float64', [150.0, 250.0])
    >>> as_sales_arrays([1, float("nan")], [150, 250])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    models.errors.NonFiniteDataError: carats contain 1 non-finite value(s) ... at index 1: ...
    """
    x = as_float_array(carats, "carats")
    y = as_float_array(prices, "prices")
    check_same_length(x, y)
    if x.size == 0:
        return x, y
    _check_finite(x, "carats")
    _check_finite(y, "prices")
    smallest = float(x.min())
    if smallest <= 0.0:
        index = int(np.argmin(x))
        raise NonPositiveCaratsError(f"carats must be > 0, got {smallest!r} at index {index}")
    return x, y


def carats_to_price(carats: ArrayLike) -> NDArray[np.float64]:
    """Carats of rings to quote, any shape, as float64; every value finite.

    Examples
    --------
    >>> carats_to_price([[1, 2.5]]).tolist()
    [[1.0, 2.5]]
    """
    try:
        x = np.asarray(carats, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"carats to price must be numbers: {exc}") from None
    if not np.all(np.isfinite(x)):
        raise NonFiniteDataError("carats to price must be finite numbers")
    return x


def check_priceable(prices: NDArray[np.float64], what: str) -> None:
    """Refuse quotes (``what``: the prediction, the interval) that overflowed to infinity."""
    if not np.all(np.isfinite(prices)):
        raise NonFiniteDataError(f"carats are too large to price: the {what} overflows")


def finite_float(value: Any, name: str) -> float:
    """``value`` as a finite float.

    Examples
    --------
    >>> finite_float(3, "sum_x")
    3.0
    >>> finite_float(float("inf"), "shift_y")
    Traceback (most recent call last):
    ...
    models.errors.NonFiniteDataError: shift_y must be finite, got inf
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidDataError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise NonFiniteDataError(f"{name} must be finite, got {number!r}")
    return number
