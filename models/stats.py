"""Sufficient statistics of a set of sales: everything a least-squares fit of one line needs.

Six numbers (the count and five sums) determine the gradient, the Hessian and the cost of
``J(theta) = 1/(2m) sum (theta0 + theta1 x - y)^2`` exactly, so gradient descent never touches
the rows again and one step costs O(1) whatever the number of sales. The sums are of values
*shifted* by a reference point (recorded alongside): with carats clustered far from zero the
raw sum of squares would be a huge number whose meaningful part (the spread) drowns in its
rounding error, while the shifted sums keep it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.errors import DegenerateDataError, InvalidDataError, NonFiniteDataError, NoSalesError
from models.validation import as_float_array, as_sales_arrays, check_same_length, finite_float

__all__ = ["SufficientStats", "check_fittable"]

_SUM_FIELDS = ("sum_x", "sum_y", "sum_xx", "sum_xy", "sum_yy")
_FIELDS = ("n", "shift_x", "shift_y", *_SUM_FIELDS)

# Spread below this many ulps of the mean carat value is indistinguishable from rounding of
# identical values (the shift itself is a rounded mean), so it counts as a single value.
_DISTINCT_ULPS = 16.0

# For the default shift a mean of at most this many evenly spaced rows is enough: any shift
# within a few standard deviations of the true mean keeps the centred sums accurate, and it
# saves a full pass over the data.
_SHIFT_SAMPLE = 4096

# Rows per block of the statistics pass: two buffers of this many float64 fit in L2 cache.
_BLOCK = 32768


def _shifted_sums(
    x: NDArray[np.float64], y: NDArray[np.float64], sx: float, sy: float
) -> tuple[float, float, float, float, float]:
    """``sum u, sum v, sum u^2, sum u v, sum v^2`` for ``u = x - sx``, ``v = y - sy``.

    Blocks small enough to stay in cache: each column is read from memory once, shifted
    into a reused buffer, and the products are BLAS dot products on the cached buffer.
    """
    n = x.size
    block = min(n, _BLOCK)
    u_buf = np.empty(block)
    v_buf = np.empty(block)
    su = sv = suu = suv = svv = 0.0
    for start in range(0, n, block):
        stop = min(start + block, n)
        u = np.subtract(x[start:stop], sx, out=u_buf[: stop - start])
        v = np.subtract(y[start:stop], sy, out=v_buf[: stop - start])
        su += float(u.sum())
        sv += float(v.sum())
        suu += float(np.dot(u, u))
        suv += float(np.dot(u, v))
        svv += float(np.dot(v, v))
    return su, sv, suu, suv, svv


@dataclass(frozen=True, slots=True)
class SufficientStats:
    """Count and shifted sums of a set of sales ``(x = carats, y = price)``.

    With ``u = x - shift_x`` and ``v = y - shift_y`` the fields are ``n``, ``sum_x = sum u``,
    ``sum_y = sum v``, ``sum_xx = sum u^2``, ``sum_xy = sum u v`` and ``sum_yy = sum v^2``:
    exactly one row of ``SELECT count(*), sum(carats - :sx), ...``. Two sets merge with ``+``,
    and ``-`` takes a subset (sales since deleted) back out. ``SufficientStats(0, sx, sy)``
    is no sales, summed around ``(sx, sy)``.

    Parameters
    ----------
    n : int
        Number of sales (0 is allowed; fitting it raises :class:`NoSalesError`).
    shift_x, shift_y : float
        The reference point subtracted before summing.
    sum_x, sum_y, sum_xx, sum_xy, sum_yy : float
        The shifted sums.

    Examples
    --------
    >>> s = SufficientStats.from_arrays([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
    >>> s.n, s.mean_x, round(s.mean_y, 4)
    (3, 2.0, 216.6667)
    >>> round(s.sxy / s.sxx, 10)  # the least-squares gold price per carat
    50.0
    >>> both = s + SufficientStats.from_arrays([4.0], [380.0])
    >>> both.n, both.mean_x
    (4, 2.5)
    """

    n: int
    shift_x: float = 0.0
    shift_y: float = 0.0
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_xx: float = 0.0
    sum_xy: float = 0.0
    sum_yy: float = 0.0

    def __post_init__(self) -> None:
        n = self.n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise InvalidDataError(f"n must be an integer count of sales, got {n!r}")
        if n < 0:
            raise InvalidDataError(f"n must be >= 0, got {n}")
        object.__setattr__(self, "n", int(n))
        for name in _FIELDS[1:]:
            object.__setattr__(self, name, finite_float(getattr(self, name), name))
        if self.sum_xx < 0.0 or self.sum_yy < 0.0:
            raise InvalidDataError(
                f"sum_xx and sum_yy are sums of squares and must be >= 0, "
                f"got {self.sum_xx!r} and {self.sum_yy!r}"
            )
        if n == 0 and any(getattr(self, name) != 0.0 for name in _SUM_FIELDS):
            raise InvalidDataError("with n = 0 every sum must be 0")

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        carats: ArrayLike,
        prices: ArrayLike,
        *,
        shift_x: float | None = None,
        shift_y: float | None = None,
    ) -> SufficientStats:
        """Compute the statistics of row arrays in one vectorised pass.

        Parameters
        ----------
        carats, prices : array_like
            One-dimensional and of equal length; finite; carats > 0.
        shift_x, shift_y : float, optional
            Reference point. By default the mean of up to 4,096 evenly spaced rows, which is
            close enough to the true mean to keep the centred sums accurate.

        Returns
        -------
        SufficientStats

        Examples
        --------
        >>> s = SufficientStats.from_arrays([18.0, 18.25, 18.5], [930.0, 942.5, 955.0])
        >>> s.shift_x, s.sxx
        (18.25, 0.125)
        """
        x = as_float_array(carats, "carats")
        y = as_float_array(prices, "prices")
        check_same_length(x, y)
        n = int(x.size)
        if n == 0:
            return cls(
                n=0,
                shift_x=0.0 if shift_x is None else shift_x,
                shift_y=0.0 if shift_y is None else shift_y,
            )
        step = max(1, n // _SHIFT_SAMPLE)
        given_x = None if shift_x is None else finite_float(shift_x, "shift_x")
        given_y = None if shift_y is None else finite_float(shift_y, "shift_y")
        with np.errstate(over="ignore", invalid="ignore"):
            sx = float(x[::step].mean()) if given_x is None else given_x
            sy = float(y[::step].mean()) if given_y is None else given_y
            sums = _shifted_sums(x, y, sx, sy)
            smallest = float(x.min())
        # NaN and infinity propagate into the sums, so the full validation pass (which finds
        # and names the bad value) only runs when something is wrong.
        if not (math.isfinite(sx) and math.isfinite(sy)) or not all(map(math.isfinite, sums)):
            as_sales_arrays(x, y)
            raise NonFiniteDataError(
                "the sums of the sales overflowed (carats or prices are too large to fit)"
            )
        if not smallest > 0.0:
            as_sales_arrays(x, y)
        return cls(n, sx, sy, *sums)

    @classmethod
    def from_sums(
        cls,
        *,
        n: int,
        shift_x: float | None = 0.0,
        shift_y: float | None = 0.0,
        sum_x: float | None = 0.0,
        sum_y: float | None = 0.0,
        sum_xx: float | None = 0.0,
        sum_xy: float | None = 0.0,
        sum_yy: float | None = 0.0,
    ) -> SufficientStats:
        """Build the statistics from one database row of shifted sums.

        SQL's ``sum`` over no rows is ``NULL``; with ``n == 0`` a ``None`` sum reads as 0.

        Examples
        --------
        >>> SufficientStats.from_sums(n=0, sum_x=None, sum_y=None, sum_xx=None,
        ...                           sum_xy=None, sum_yy=None).n
        0
        >>> s = SufficientStats.from_sums(n=2, shift_x=10.0, shift_y=500.0, sum_x=0.0,
        ...                               sum_y=0.0, sum_xx=2.0, sum_xy=100.0, sum_yy=5000.0)
        >>> s.mean_x, s.sxy / s.sxx
        (10.0, 50.0)
        """
        given = {
            "shift_x": shift_x,
            "shift_y": shift_y,
            "sum_x": sum_x,
            "sum_y": sum_y,
            "sum_xx": sum_xx,
            "sum_xy": sum_xy,
            "sum_yy": sum_yy,
        }
        values: dict[str, float] = {}
        for name, value in given.items():
            if value is None and n != 0 and name in _SUM_FIELDS:
                raise InvalidDataError(f"{name} is missing (None) although n = {n}")
            values[name] = 0.0 if value is None else value
        return cls(n=n, **values)

    # ---- derived quantities -------------------------------------------------------------

    @property
    def mean_x(self) -> float:
        """Mean carat value (``shift_x`` when there are no sales)."""
        return self.shift_x + self.sum_x / self.n if self.n else self.shift_x

    @property
    def mean_y(self) -> float:
        """Mean price (``shift_y`` when there are no sales)."""
        return self.shift_y + self.sum_y / self.n if self.n else self.shift_y

    @property
    def sxx(self) -> float:
        """Centred sum of squares of carats, ``sum (x - mean_x)^2`` (never negative)."""
        if self.n == 0:
            return 0.0
        return max(self.sum_xx - self.sum_x * self.sum_x / self.n, 0.0)

    @property
    def syy(self) -> float:
        """Centred sum of squares of prices, ``sum (y - mean_y)^2`` (never negative)."""
        if self.n == 0:
            return 0.0
        return max(self.sum_yy - self.sum_y * self.sum_y / self.n, 0.0)

    @property
    def sxy(self) -> float:
        """Centred sum of cross products, ``sum (x - mean_x)(y - mean_y)``."""
        if self.n == 0:
            return 0.0
        return self.sum_xy - self.sum_x * self.sum_y / self.n

    @property
    def std_x(self) -> float:
        """Population standard deviation of carats."""
        return math.sqrt(self.sxx / self.n) if self.n else 0.0

    @property
    def std_y(self) -> float:
        """Population standard deviation of prices."""
        return math.sqrt(self.syy / self.n) if self.n else 0.0

    @property
    def has_distinct_carats(self) -> bool:
        """Whether at least two carat values differ by more than rounding noise."""
        if self.n < 2:
            return False
        floor = _DISTINCT_ULPS * float(np.spacing(abs(self.mean_x) + abs(self.shift_x)))
        return self.sxx > self.n * floor * floor

    # ---- combination and serialisation --------------------------------------------------

    def shifted(self, shift_x: float, shift_y: float) -> SufficientStats:
        """The same sales summed around another reference point.

        Examples
        --------
        >>> s = SufficientStats.from_arrays([1.0, 3.0], [10.0, 30.0]).shifted(0.0, 0.0)
        >>> s.sum_x, s.sum_xx, s.sum_xy
        (4.0, 10.0, 100.0)
        """
        dx = self.shift_x - shift_x
        dy = self.shift_y - shift_y
        if self.n == 0:
            return SufficientStats(n=0, shift_x=shift_x, shift_y=shift_y)
        # (u + dx) expanded; the centred parts are kept whole so nothing cancels needlessly.
        n = self.n
        sum_x = self.sum_x + n * dx
        sum_y = self.sum_y + n * dy
        sum_xx = self.sum_xx + dx * (2.0 * self.sum_x + n * dx)
        sum_yy = self.sum_yy + dy * (2.0 * self.sum_y + n * dy)
        sum_xy = self.sum_xy + dy * self.sum_x + dx * self.sum_y + n * dx * dy
        return SufficientStats(
            n, shift_x, shift_y, sum_x, sum_y, max(sum_xx, 0.0), sum_xy, max(sum_yy, 0.0)
        )

    def __add__(self, other: object) -> SufficientStats:
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        # Re-centre both parts on the combined mean: shifting a set to (near) its own mean is
        # the accurate direction (as in Chan, Golub and LeVeque's pairwise variance update).
        mx = (self.n * self.mean_x + other.n * other.mean_x) / n
        my = (self.n * self.mean_y + other.n * other.mean_y) / n
        return self._combined(other, n, mx, my, 1.0)

    def __sub__(self, other: object) -> SufficientStats:
        """The sales of ``self`` without those of ``other``, a subset of them: ``+`` undone.

        Only the sums are known, so nothing checks that ``other`` is a subset; a rounding
        residue that would make a sum of squares negative is clamped to 0, and removing every
        sale leaves zero sums around ``self``'s reference point.

        Examples
        --------
        >>> a = SufficientStats.from_arrays([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
        >>> b = SufficientStats.from_arrays([3.0], [250.0])
        >>> rest = a - b
        >>> rest.n, rest.mean_x, rest.sxy / rest.sxx
        (2, 1.5, 100.0)
        >>> (a - a).n, (a - a).sum_xx
        (0, 0.0)
        """
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if other.n == 0:
            return self
        n = self.n - other.n
        if n < 0:
            raise InvalidDataError(
                f"cannot take statistics of {other.n} sales out of statistics of {self.n}"
            )
        if n == 0:
            return SufficientStats(0, self.shift_x, self.shift_y)
        # Around the remaining sales' own mean, as for +; the subtraction itself may cancel
        # (a few sales left of many), which no choice of reference point avoids.
        mx = (self.n * self.mean_x - other.n * other.mean_x) / n
        my = (self.n * self.mean_y - other.n * other.mean_y) / n
        return self._combined(other, n, mx, my, -1.0)

    def _combined(
        self, other: SufficientStats, n: int, mx: float, my: float, sign: float
    ) -> SufficientStats:
        """``self + sign * other`` field by field, both shifted to ``(mx, my)``."""
        a = self.shifted(mx, my)
        b = other.shifted(mx, my)
        return SufficientStats(
            n,
            mx,
            my,
            a.sum_x + sign * b.sum_x,
            a.sum_y + sign * b.sum_y,
            max(a.sum_xx + sign * b.sum_xx, 0.0),
            a.sum_xy + sign * b.sum_xy,
            max(a.sum_yy + sign * b.sum_yy, 0.0),
        )

    def __radd__(self, other: object) -> SufficientStats:
        # Lets the built-in sum() start from 0.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, int | float]:
        """JSON-safe dict of the fields.

        Examples
        --------
        >>> SufficientStats.from_dict(SufficientStats(n=1, sum_xx=0.0).to_dict()).n
        1
        """
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SufficientStats:
        """Inverse of :meth:`to_dict`."""
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise InvalidDataError(f"statistics dict is missing {', '.join(missing)}")
        return cls(**{name: data[name] for name in _FIELDS})


def check_fittable(stats: SufficientStats) -> None:
    """Raise unless a line can be fitted to these sales.

    Raises
    ------
    NoSalesError
        When ``n == 0``.
    DegenerateDataError
        When fewer than two distinct carat values are present.

    Examples
    --------
    >>> check_fittable(SufficientStats.from_arrays([2.0, 2.0], [100.0, 120.0]))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    models.errors.DegenerateDataError: all 2 sales have the same carat value (2); ...
    """
    if stats.n == 0:
        raise NoSalesError(
            "there are no sales to fit: at least two sales with different carat values are needed"
        )
    if not stats.has_distinct_carats:
        if stats.n == 1:
            raise DegenerateDataError(
                "only one sale: at least two sales with different carat values are needed "
                "to tell the silver price from the gold price per carat"
            )
        raise DegenerateDataError(
            f"all {stats.n} sales have the same carat value ({stats.mean_x:.6g}); at least two "
            "distinct carat values are needed to tell the silver price from the gold price "
            "per carat"
        )
