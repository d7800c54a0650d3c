"""Gradient descent on the squared-error cost, from sufficient statistics or from row chunks.

Everything happens in a *feature space* ``x' = (x - x_offset) / x_scale``,
``y' = (y - y_offset) / y_scale``: the raw space (offsets 0, scales 1) is the article's
algorithm; the standardised space (centred on the means, divided by the standard deviations,
as scikit-learn's ``LinearRegression`` centres) has the identity as Hessian, so a step size
derived from it converges at once and no data set is badly conditioned there.

In a feature space with ``r_i = theta0 + theta1 x'_i - y'_i`` the cost and its gradient are

* ``J = 1/(2m) sum r_i^2 = (rbar^2 + Vy - 2 theta1 C + theta1^2 Vx) / 2``
* ``dJ/dtheta0 = rbar``, ``dJ/dtheta1 = theta1 Vx - C + rbar mx``

where ``rbar = theta0 + theta1 mx - my`` is the mean residual and ``mx, my, Vx, Vy, C`` are the
means, variances and covariance of the transformed data, taken from the *centred* sums. That
is the article's ``(1/m) X^T (X theta - y)`` rearranged by the shift algebra so that nothing
large cancels, and the cost is evaluated as ``J* + (rbar^2 + Vx (theta1 - b*)^2) / 2`` around
its minimum ``J*``, so that it stays accurate (and monotone) right down to the optimum.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.errors import DivergenceError, InvalidParameterError, MismatchedLengthError
from models.stats import SufficientStats
from models.validation import as_sales_arrays

__all__ = [
    "ChunkSource",
    "DescentResult",
    "FeatureSpace",
    "Quadratic",
    "Stability",
    "row_curvature",
    "run_batch",
    "run_stochastic",
    "suggested_rate",
]

# Chunks are validated as they are read, so anything array-like will do.
ChunkSource = Callable[[], Iterable[tuple[ArrayLike, ArrayLike]]]

# A cost that rises by more than this fraction (plus a floor relative to the starting cost)
# is divergence; anything smaller is rounding noise at the optimum.
_RISE_RTOL = 1e-9
_RISE_FLOOR = 1e-12


@dataclass(frozen=True, slots=True)
class FeatureSpace:
    """An affine change of variables ``x' = (x - x_offset)/x_scale``, same for ``y``.

    Examples
    --------
    >>> FeatureSpace.raw().to_prices(30.0, 50.0)
    (30.0, 50.0)
    >>> s = SufficientStats.from_arrays([1.0, 2.0, 3.0], [150.0, 250.0, 250.0])
    >>> space = FeatureSpace.standardised(s)
    >>> space.x_offset, round(space.x_scale ** 2, 12)
    (2.0, 0.666666666667)
    """

    name: str
    x_offset: float
    x_scale: float
    y_offset: float
    y_scale: float

    @classmethod
    def raw(cls) -> FeatureSpace:
        """Carats and dollars as they are (the article's space)."""
        return cls("raw", 0.0, 1.0, 0.0, 1.0)

    @classmethod
    def standardised(cls, stats: SufficientStats) -> FeatureSpace:
        """Centre on the means and divide by the standard deviations.

        Constant prices have no spread to divide by; their scale is left at 1.
        """
        y_scale = stats.std_y
        return cls(
            "scaled",
            stats.mean_x,
            stats.std_x,
            stats.mean_y,
            y_scale if y_scale > 0.0 else 1.0,
        )

    @overload
    def to_prices(self, theta0: float, theta1: float) -> tuple[float, float]: ...

    @overload
    def to_prices(
        self, theta0: NDArray[np.float64], theta1: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...

    def to_prices(self, theta0: Any, theta1: Any) -> tuple[Any, Any]:
        """Map working-space parameters (numbers or arrays) to
        ``(silver_price, gold_price_per_carat)``."""
        gold = self.y_scale * theta1 / self.x_scale
        silver = self.y_offset + self.y_scale * theta0 - gold * self.x_offset
        return silver, gold


@dataclass(frozen=True, slots=True)
class Quadratic:
    """The cost ``J`` of one data set in one feature space, as exact closed-form pieces.

    Attributes
    ----------
    mx, my : float
        Means of the transformed carats and prices.
    vx, cxy : float
        Variance of the transformed carats, covariance of transformed carats and prices.
    slope : float
        ``cxy / vx``, the optimal ``theta1``.
    min_cost : float
        ``J`` at its minimum, ``(Vy - C^2/Vx) / 2``, clipped at 0.

    Examples
    --------
    The article's toy data ``(1, 3), (2, 6), (3, 9)``:

    >>> q = Quadratic.from_stats(SufficientStats.from_arrays([1, 2, 3], [3, 6, 9]),
    ...                          FeatureSpace.raw())
    >>> q.cost(0.0, 0.0), q.gradient(0.0, 0.0)
    (21.0, (-6.0, -14.0))
    """

    mx: float
    my: float
    vx: float
    cxy: float
    slope: float
    min_cost: float

    @classmethod
    def from_stats(cls, stats: SufficientStats, space: FeatureSpace) -> Quadratic:
        n = stats.n
        sx, sy = space.x_scale, space.y_scale
        # The offsets are subtracted from the shifts first: with offset = mean this is an
        # exact zero rather than the rounding residue of two large numbers.
        mx = ((stats.shift_x - space.x_offset) + stats.sum_x / n) / sx
        my = ((stats.shift_y - space.y_offset) + stats.sum_y / n) / sy
        sxx, sxy, syy = stats.sxx, stats.sxy, stats.syy
        vx = sxx / n / (sx * sx)
        cxy = sxy / n / (sx * sy)
        residual = max(syy - sxy * (sxy / sxx), 0.0)
        return cls(mx, my, vx, cxy, cxy / vx, 0.5 * residual / n / (sy * sy))

    def mean_residual(self, theta0: float, theta1: float) -> float:
        return theta0 + theta1 * self.mx - self.my

    def gradient(self, theta0: float, theta1: float) -> tuple[float, float]:
        """``(dJ/dtheta0, dJ/dtheta1)``."""
        rbar = self.mean_residual(theta0, theta1)
        return rbar, theta1 * self.vx - self.cxy + rbar * self.mx

    def cost(self, theta0: float, theta1: float) -> float:
        """``J(theta)`` in this space's units."""
        rbar = self.mean_residual(theta0, theta1)
        d = theta1 - self.slope
        return self.min_cost + 0.5 * (rbar * rbar + self.vx * d * d)

    def optimum(self) -> tuple[float, float]:
        """The minimiser ``(theta0*, theta1*)``."""
        return self.my - self.slope * self.mx, self.slope

    def hessian_eigenvalues(self) -> tuple[float, float]:
        """Eigenvalues ``(lambda_min, lambda_max)`` of ``[[1, mx], [mx, Vx + mx^2]]``."""
        d = self.vx + self.mx * self.mx
        lam_max = 0.5 * (1.0 + d) + math.hypot(0.5 * (1.0 - d), self.mx)
        # The determinant is exactly Vx; dividing by lambda_max avoids the cancellation of
        # the textbook formula for the small eigenvalue.
        return self.vx / lam_max, lam_max

    def max_stable_rate(self) -> float:
        """``2 / lambda_max``: batch descent diverges at this rate or above."""
        return 2.0 / self.hessian_eigenvalues()[1]

    def optimal_rate(self) -> float:
        """``2 / (lambda_min + lambda_max)``: the fastest constant rate for a quadratic."""
        lo, hi = self.hessian_eigenvalues()
        return 2.0 / (lo + hi)


@dataclass(slots=True)
class DescentResult:
    """What a descent run produced, in working-space parameters.

    ``iterations[k]`` is an update count (0: the start), ``costs[k]`` the cost after it
    (dollars squared), and ``path0[k], path1[k]`` the parameters then: the path the descent
    took.
    """

    theta0: float
    theta1: float
    n_iter: int
    converged: bool
    gradient_norm: float
    learning_rate: float
    max_stable_rate: float
    iterations: list[int] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    path0: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    path1: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))


def suggested_rate(limit: float) -> float:
    """A rate safely below the stability limit, at three significant digits.

    Examples
    --------
    >>> suggested_rate(0.0104), suggested_rate(2.0), suggested_rate(0.0100000001)
    (0.0103, 1.99, 0.00999)
    """
    # A millionth below the limit first, so that what is printed is stable, not the limit.
    target = limit * (1.0 - 1e-6)
    step = 10.0 ** (math.floor(math.log10(target)) - 2)
    return float(f"{math.floor(target / step) * step:.3g}")


@dataclass(frozen=True, slots=True)
class Stability:
    """The learning rate at and above which descent diverges, and what sets it: the whole
    cost's curvature for batch descent; for stochastic steps also one sale's, as a step may
    use the sale farthest from the rest alone (or nearly)."""

    limit: float
    basis: str

    @classmethod
    def batch(cls, q: Quadratic) -> Stability:
        return cls(q.max_stable_rate(), "2 / largest Hessian eigenvalue of the cost")

    @classmethod
    def stochastic(cls, q: Quadratic, row_curvature: float, batch_size: int) -> Stability:
        """For steps on batches of ``batch_size`` rows, one of which may be the sale farthest
        from the rest (``row_curvature``, see `row_curvature`) beside typical ones: the
        batch's curvature is about ``row_curvature / b + lambda_max * (b - 1) / b``. Exact
        for single rows (SGD); for larger batches the whole cost's limit soon governs."""
        lam = q.hessian_eigenvalues()[1]
        worst = row_curvature / batch_size + lam * (batch_size - 1) / batch_size
        if worst <= lam:
            return cls.batch(q)
        return cls(
            2.0 / worst,
            f"2 / the curvature of a batch of {batch_size} holding the sale "
            "farthest from the others",
        )

    def check(self, rate: float, space: FeatureSpace) -> None:
        """Refuse a rate at or above the limit before running anything."""
        if rate >= self.limit:
            raise self.divergence(rate, space, "at or above the stability limit")

    def divergence(self, rate: float, space: FeatureSpace, why: str) -> DivergenceError:
        return DivergenceError(
            f"learning rate {rate:.6g} makes gradient descent diverge on this data ({why}); "
            f"stable rates are below {self.limit:.6g} ({self.basis}, in the {space.name} "
            f"feature space): use {suggested_rate(self.limit):.3g} or 'auto'",
            learning_rate=rate,
            max_stable_learning_rate=self.limit,
            feature_space=space.name,
        )


def row_curvature(chunks: ChunkSource, space: FeatureSpace) -> float:
    """The largest ``1 + z^2`` over the rows (``z`` the working-space carats): the largest
    Hessian eigenvalue of one sale's cost. A step on a batch holding that sale is stable only
    below ``2 /`` this, however gentle the whole cost is: one sale far from the rest makes it
    large. One pass over the carats.

    Examples
    --------
    >>> space = FeatureSpace("raw", 0.0, 1.0, 0.0, 1.0)
    >>> row_curvature(lambda: iter([(np.array([1.0, 3.0]), np.array([5.0, 6.0]))]), space)
    10.0
    """
    largest = 0.0
    for raw_x, _ in chunks():
        x = np.asarray(raw_x, dtype=np.float64)
        if x.size:
            z = (x - space.x_offset) / space.x_scale
            largest = max(largest, float(np.max(z * z)))
    return 1.0 + largest


def run_batch(
    q: Quadratic,
    space: FeatureSpace,
    *,
    learning_rate: float,
    max_iterations: int,
    tolerance: float,
) -> DescentResult:
    """Full-batch gradient descent from ``theta = 0``.

    Each iteration is ``theta -= learning_rate * grad J(theta)`` followed by recording the cost,
    the article's loop (iteration 0 records the start); with ``tolerance > 0`` it stops as
    soon as the gradient norm is at or below it. Costs are recorded in dollars squared
    whatever the space.

    Raises
    ------
    DivergenceError
        If the rate is at or above the stability limit, or the cost rises or stops being
        finite during the run.

    Examples
    --------
    >>> q = Quadratic.from_stats(SufficientStats.from_arrays([1, 2, 3], [3, 6, 9]),
    ...                          FeatureSpace.raw())
    >>> r = run_batch(q, FeatureSpace.raw(), learning_rate=0.01, max_iterations=2, tolerance=0)
    >>> round(r.theta1, 6), r.iterations, [round(c, 4) for c in r.costs]
    (0.272267, [0, 1, 2], [21.0, 18.7443, 16.7319])
    """
    stability = Stability.batch(q)
    stability.check(learning_rate, space)
    to_dollars2 = space.y_scale * space.y_scale
    t0 = t1 = 0.0
    previous = q.cost(t0, t1)
    floor = _RISE_FLOOR * previous
    # Iteration 0 is where the descent starts. Compact buffers: a run may take a million steps.
    costs = [previous * to_dollars2]
    path0, path1 = array("d", [t0]), array("d", [t1])
    g0, g1 = q.gradient(t0, t1)
    norm = math.hypot(g0, g1)
    if 0.0 < norm <= tolerance and previous - q.min_cost > _RISE_RTOL * previous:
        # It would stop where it starts, at prices of zero, and call that converged.
        raise InvalidParameterError(
            f"tolerance {tolerance:.6g} is not below the gradient norm at the start "
            f"({norm:.6g}): descent would stop before its first step; use a smaller tolerance",
            parameter="tolerance",
        )
    n_iter = 0
    while n_iter < max_iterations and not norm <= tolerance:
        t0 -= learning_rate * g0
        t1 -= learning_rate * g1
        n_iter += 1
        cost = q.cost(t0, t1)
        if not math.isfinite(cost) or cost > previous * (1.0 + _RISE_RTOL) + floor:
            why = "the cost became non-finite" if not math.isfinite(cost) else "the cost rose"
            raise stability.divergence(learning_rate, space, f"{why} at iteration {n_iter}")
        costs.append(cost * to_dollars2)
        path0.append(t0)
        path1.append(t1)
        previous = cost
        g0, g1 = q.gradient(t0, t1)
        norm = math.hypot(g0, g1)
    return DescentResult(
        theta0=t0,
        theta1=t1,
        n_iter=n_iter,
        converged=norm <= tolerance,
        gradient_norm=norm,
        learning_rate=learning_rate,
        max_stable_rate=stability.limit,
        iterations=list(range(n_iter + 1)),
        costs=costs,
        path0=np.frombuffer(path0),
        path1=np.frombuffer(path1),
    )


class _PolyakAverage:
    """Running mean of the iterates added to it (Polyak-Ruppert averaging), which removes
    most of the noise that the last stochastic steps leave in the parameters."""

    __slots__ = ("count", "theta0", "theta1")

    def __init__(self) -> None:
        self.count = 0
        self.theta0 = 0.0
        self.theta1 = 0.0

    def add(self, theta0: float, theta1: float) -> None:
        self.count += 1
        self.theta0 += (theta0 - self.theta0) / self.count
        self.theta1 += (theta1 - self.theta1) / self.count


@dataclass(slots=True)
class _Walk:
    """Where stochastic descent is: the parameters, the updates made, and their average.

    The step at update ``k`` is ``learning_rate / (1 + k / updates_per_epoch)``.
    """

    learning_rate: float
    updates_per_epoch: int
    theta0: float = 0.0
    theta1: float = 0.0
    step: int = 0
    average: _PolyakAverage = field(default_factory=_PolyakAverage)

    def reported(self) -> tuple[float, float]:
        """The parameters a run reports: the average once averaging has begun."""
        if self.average.count:
            return self.average.theta0, self.average.theta1
        return self.theta0, self.theta1


def _update_rows(
    walk: _Walk, z: NDArray[np.float64], t: NDArray[np.float64], averaging: bool
) -> None:
    """One update per row (``batch_size=1``), on plain floats: numpy's per-call cost of
    microseconds would dominate a step of a few arithmetic operations."""
    t0, t1, step = walk.theta0, walk.theta1, walk.step
    learning_rate, per_epoch, add = walk.learning_rate, walk.updates_per_epoch, walk.average.add
    for zi, ti in zip(z.tolist(), t.tolist(), strict=True):
        rate = learning_rate / (1.0 + step / per_epoch)
        r = t0 + t1 * zi - ti
        t0 -= rate * r
        t1 -= rate * r * zi
        step += 1
        if averaging:
            add(t0, t1)
    walk.theta0, walk.theta1, walk.step = t0, t1, step


def _update_batch(
    walk: _Walk, z: NDArray[np.float64], t: NDArray[np.float64], averaging: bool
) -> None:
    """One update from the mean gradient over the rows of one mini-batch."""
    r = walk.theta0 + walk.theta1 * z - t
    rate = walk.learning_rate / (1.0 + walk.step / walk.updates_per_epoch)
    walk.theta0 -= rate * float(r.mean())
    walk.theta1 -= rate * float(np.dot(r, z)) / z.size
    walk.step += 1
    if averaging:
        walk.average.add(walk.theta0, walk.theta1)


def _epoch(
    walk: _Walk,
    chunks: ChunkSource,
    space: FeatureSpace,
    batch_size: int,
    averaging: bool,
    rng: np.random.Generator,
) -> int:
    """One pass over the rows, chunk by chunk, each shuffled; returns the rows seen.

    The updates see the carats ``z`` and the prices (targets) ``t`` in the working space.
    """
    seen = 0
    for raw_x, raw_y in chunks():
        x, y = as_sales_arrays(raw_x, raw_y)
        seen += x.size
        if x.size == 0:
            continue
        order = rng.permutation(x.size)
        z = (x[order] - space.x_offset) / space.x_scale
        t = (y[order] - space.y_offset) / space.y_scale
        if batch_size == 1:
            _update_rows(walk, z, t, averaging)
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, z.size, batch_size):
                stop = start + batch_size
                _update_batch(walk, z[start:stop], t[start:stop], averaging)
    return seen


def _check_epoch(
    q: Quadratic,
    space: FeatureSpace,
    stability: Stability,
    walk: _Walk,
    epoch: int,
    seen: int,
    n_rows: int,
) -> float:
    """The exact cost of the reported parameters after ``epoch`` (counted from 1); raises if
    the epoch read other rows than the statistics describe, or the descent diverged."""
    if seen != n_rows:
        raise MismatchedLengthError(
            f"the row chunks of epoch {epoch} hold {seen} sales but the statistics "
            f"describe {n_rows}: rows and statistics must come from the same data"
        )
    p0, p1 = walk.reported()
    cost = q.cost(p0, p1) if math.isfinite(p0) and math.isfinite(p1) else math.inf
    if not math.isfinite(cost):
        raise stability.divergence(
            walk.learning_rate, space, f"the parameters became non-finite in epoch {epoch}"
        )
    # Noise may raise the cost from one epoch to the next; above the start it is divergence.
    if cost > q.cost(0.0, 0.0) * (1.0 + _RISE_RTOL):
        raise stability.divergence(
            walk.learning_rate, space, f"the cost rose above its starting value in epoch {epoch}"
        )
    return cost


def run_stochastic(
    q: Quadratic,
    space: FeatureSpace,
    chunks: ChunkSource,
    *,
    n_rows: int,
    stability: Stability,
    learning_rate: float,
    batch_size: int,
    epochs: int,
    tolerance: float,
    rng: np.random.Generator,
) -> DescentResult:
    """Mini-batch (or, with ``batch_size=1``, stochastic) gradient descent over row chunks.

    ``chunks()`` is called once per epoch and yields ``(carats, prices)`` arrays; each chunk is
    shuffled with ``rng`` and cut into batches, so memory stays bounded by the chunk size.
    The step at update ``k`` is ``learning_rate / (1 + k / updates_per_epoch)`` and the result
    is the average of the iterates over the second half of the epochs (Polyak-Ruppert
    averaging), which removes most of the noise a stochastic step leaves. After each epoch
    the exact full cost (and gradient) of the reported parameters comes from ``q``; the run
    stops early when that gradient norm is at or below ``tolerance``.

    Raises
    ------
    DivergenceError
        If the rate is at or above ``stability``'s limit (`Stability.stochastic`), the
        parameters stop being finite, or an epoch ends with a higher cost than the start.
    MismatchedLengthError
        If an epoch yields a different number of rows than ``n_rows``.
    """
    stability.check(learning_rate, space)
    to_dollars2 = space.y_scale * space.y_scale
    walk = _Walk(learning_rate, updates_per_epoch=max(1, -(-n_rows // batch_size)))
    iterations = [0]  # the start
    costs = [q.cost(0.0, 0.0) * to_dollars2]
    path0, path1 = array("d", [0.0]), array("d", [0.0])
    converged = False
    norm = math.inf
    for epoch in range(1, epochs + 1):
        seen = _epoch(walk, chunks, space, batch_size, epoch > epochs // 2, rng)
        cost = _check_epoch(q, space, stability, walk, epoch, seen, n_rows)
        p0, p1 = walk.reported()
        iterations.append(walk.step)
        costs.append(cost * to_dollars2)
        path0.append(p0)
        path1.append(p1)
        norm = math.hypot(*q.gradient(p0, p1))
        if norm <= tolerance:
            converged = True
            break
    p0, p1 = walk.reported()
    return DescentResult(
        theta0=p0,
        theta1=p1,
        n_iter=walk.step,
        converged=converged,
        gradient_norm=norm,
        learning_rate=learning_rate,
        max_stable_rate=stability.limit,
        iterations=iterations,
        costs=costs,
        path0=np.frombuffer(path0),
        path1=np.frombuffer(path1),
    )
