"""The cost of a training run against its iteration number, kept small enough to store."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.errors import InvalidParameterError

__all__ = ["MAX_POINTS", "CostHistory"]

MAX_POINTS = 1000


@dataclass(frozen=True, slots=True)
class CostHistory:
    """Cost ``J`` (dollars squared) after selected iterations, at most :data:`MAX_POINTS`,
    and the ``(silver_price, gold_price_per_carat)`` the descent had reached at each.

    Parameters
    ----------
    iterations : list of int
        Increasing iteration numbers (1 is the cost after the first update).
    cost : list of float
        The cost after each of those iterations.
    path : list of (float, float)
        The prices after each of those iterations (empty for versions stored without it).

    Examples
    --------
    >>> h = CostHistory.downsampled(range(1, 5001), [1.0 / k for k in range(1, 5001)])
    >>> len(h), h.iterations[:3], h.iterations[-1]
    (1000, [1, 6, 11], 5000)
    >>> CostHistory.from_dict(h.to_dict()) == h
    True
    >>> CostHistory.downsampled([1, 2], [4.0, 1.0], [10.0, 20.0], [5.0, 6.0]).path
    [(10.0, 5.0), (20.0, 6.0)]
    """

    iterations: list[int]
    cost: list[float]
    path: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.iterations) != len(self.cost):
            raise InvalidParameterError(
                f"cost history needs one cost per iteration, got {len(self.iterations)} "
                f"iterations and {len(self.cost)} costs"
            )
        if self.path and len(self.path) != len(self.cost):
            raise InvalidParameterError(
                f"cost history needs one point of the path per iteration, got "
                f"{len(self.path)} points and {len(self.cost)} costs"
            )

    def __len__(self) -> int:
        return len(self.iterations)

    @classmethod
    def downsampled(
        cls,
        iterations: Sequence[int] | range,
        cost: Sequence[float],
        silver: Sequence[float] | np.ndarray = (),
        gold: Sequence[float] | np.ndarray = (),
        max_points: int = MAX_POINTS,
    ) -> CostHistory:
        """Keep at most ``max_points`` evenly spaced entries, always the first and the last."""
        if max_points < 2:
            raise InvalidParameterError(f"max_points must be >= 2, got {max_points}")
        count = len(cost)
        if count <= max_points:
            keep: Sequence[int] | np.ndarray = range(count)
        else:
            # Evenly spaced positions, rounded: distinct because count > max_points.
            keep = np.rint(np.linspace(0, count - 1, max_points)).astype(np.int64)
        return cls(
            iterations=[int(iterations[i]) for i in keep],
            cost=[float(cost[i]) for i in keep],
            path=[(float(silver[i]), float(gold[i])) for i in keep] if len(silver) else [],
        )

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON-safe ``{"iterations": [...], "cost": [...], "path": [[silver, gold], ...]}``."""
        return {
            "iterations": list(self.iterations),
            "cost": list(self.cost),
            "path": [list(point) for point in self.path],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostHistory:
        """Inverse of :meth:`to_dict`."""
        try:
            iterations = [int(i) for i in data["iterations"]]
            cost = [float(c) for c in data["cost"]]
            path = [(float(s), float(g)) for s, g in data.get("path", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"cost history dict is malformed: {exc!r}") from None
        if not all(math.isfinite(c) for c in cost):
            raise InvalidParameterError("cost history must hold finite costs only")
        return cls(iterations=iterations, cost=cost, path=path)
