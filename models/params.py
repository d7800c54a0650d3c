"""The estimator's hyperparameters: each one's default and the values it accepts, in one table.

:data:`HYPERPARAMETERS` lists them in ``__init__`` order, in the spirit of scikit-learn's
``_parameter_constraints``; :func:`resolve_hyperparameters` checks an estimator's values
against it and returns :class:`Hyperparameters`, the values a fit runs with (``None`` and
``"auto"`` replaced by what they stand for). One rule links two of them and is written out
after the table: ``method="sgd"`` means one row per batch.

Examples
--------
>>> hp = resolve_hyperparameters({**defaults(), "method": "sgd"})
>>> hp.batch_size, hp.max_iterations, hp.learning_rate
(1, 10000, None)
>>> resolve_hyperparameters({**defaults(), "epochs": 0})
Traceback (most recent call last):
...
models.errors.InvalidParameterError: epochs must be None or an integer >= 1, got 0
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np

from models.errors import InvalidParameterError

__all__ = [
    "HYPERPARAMETERS",
    "Hyperparameter",
    "Hyperparameters",
    "Method",
    "defaults",
    "plain_params",
    "resolve_hyperparameters",
]


Method = Literal["batch", "minibatch", "sgd"]


class Constraint(ABC):
    """One kind of value a hyperparameter accepts."""

    @abstractmethod
    def accepts(self, value: object) -> bool:
        """Whether ``value`` is of this kind."""

    @abstractmethod
    def describe(self) -> str:
        """The kind, as the message of a refusal says it."""

    def resolve(self, value: Any) -> Any:
        """The value a fit uses for an accepted ``value``."""
        return value


@dataclass(frozen=True, slots=True)
class Placeholder(Constraint):
    """``token`` itself (None, or a word such as ``"auto"``), standing for ``means``."""

    token: str | None
    means: Any

    def accepts(self, value: object) -> bool:
        if self.token is None:
            return value is None
        return isinstance(value, str) and value == self.token

    def describe(self) -> str:
        return repr(self.token)

    def resolve(self, value: Any) -> Any:
        return self.means


@dataclass(frozen=True, slots=True)
class OneOf(Constraint):
    """One of a few names."""

    choices: tuple[str, ...]

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and value in self.choices

    def describe(self) -> str:
        return f"one of {', '.join(self.choices)}"


@dataclass(frozen=True, slots=True)
class Integer(Constraint):
    """An integer (not a bool) at least ``minimum``."""

    minimum: int

    def accepts(self, value: object) -> bool:
        return (
            isinstance(value, numbers.Integral)
            and not isinstance(value, bool)
            and int(value) >= self.minimum
        )

    def describe(self) -> str:
        return f"an integer >= {self.minimum}"

    def resolve(self, value: Any) -> int:
        return int(value)


@dataclass(frozen=True, slots=True)
class Real(Constraint):
    """A finite real number (not a bool) above ``minimum``, or at it when ``inclusive``."""

    minimum: float
    inclusive: bool

    def accepts(self, value: object) -> bool:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return False
        number = float(value)
        above = number >= self.minimum if self.inclusive else number > self.minimum
        return math.isfinite(number) and above

    def describe(self) -> str:
        return f"a finite number {'>=' if self.inclusive else '>'} {self.minimum:g}"

    def resolve(self, value: Any) -> float:
        return float(value)


@dataclass(frozen=True, slots=True)
class Boolean(Constraint):
    """True or False (numpy's bools too)."""

    def accepts(self, value: object) -> bool:
        return isinstance(value, bool | np.bool_)

    def describe(self) -> str:
        return "True or False"

    def resolve(self, value: Any) -> bool:
        return bool(value)


@dataclass(frozen=True, slots=True)
class Hyperparameter:
    """A hyperparameter's default in ``__init__`` and the kinds of value it accepts."""

    default: Any
    accepts: tuple[Constraint, ...]

    def describe(self) -> str:
        return " or ".join(kind.describe() for kind in self.accepts)


HYPERPARAMETERS: Mapping[str, Hyperparameter] = MappingProxyType(
    {
        # None (the learning rate "auto") is resolved by the fit: it depends on the data.
        "learning_rate": Hyperparameter(
            "auto", (Placeholder("auto", means=None), Real(0.0, inclusive=False))
        ),
        "max_iterations": Hyperparameter(None, (Placeholder(None, means=10_000), Integer(1))),
        "tolerance": Hyperparameter(1e-10, (Real(0.0, inclusive=True),)),
        "feature_scaling": Hyperparameter(True, (Boolean(),)),
        "method": Hyperparameter("batch", (OneOf(get_args(Method)),)),
        "batch_size": Hyperparameter(None, (Placeholder(None, means=32), Integer(1))),
        "epochs": Hyperparameter(None, (Placeholder(None, means=50), Integer(1))),
        "random_seed": Hyperparameter(None, (Placeholder(None, means=None), Integer(0))),
    }
)


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """The values a fit runs with: checked, placeholders replaced."""

    learning_rate: float | None  # None: the fit derives the rate from the data
    max_iterations: int
    tolerance: float
    feature_scaling: bool
    method: Method
    batch_size: int
    epochs: int
    random_seed: int | None


def defaults() -> dict[str, Any]:
    """Every hyperparameter at its default, as ``get_params`` of a fresh estimator gives."""
    return {name: spec.default for name, spec in HYPERPARAMETERS.items()}


def _kind(name: str, value: object, spec: Hyperparameter) -> Constraint:
    for kind in spec.accepts:
        if kind.accepts(value):
            return kind
    raise InvalidParameterError(f"{name} must be {spec.describe()}, got {value!r}", parameter=name)


def resolve_hyperparameters(params: Mapping[str, object]) -> Hyperparameters:
    """Check every hyperparameter in ``params`` (``get_params()`` output) and resolve it.

    Raises
    ------
    InvalidParameterError
        Naming the first hyperparameter (in table order) that breaks its rule, what it
        accepts, and the value it got.
    """
    resolved = {
        name: _kind(name, params[name], spec).resolve(params[name])
        for name, spec in HYPERPARAMETERS.items()
    }
    if resolved["method"] == "sgd":
        if params["batch_size"] is not None and resolved["batch_size"] != 1:
            raise InvalidParameterError(
                f"batch_size must be None or 1 with method 'sgd', got {params['batch_size']!r}",
                parameter="batch_size",
            )
        resolved["batch_size"] = 1
    return Hyperparameters(**resolved)


def plain_params(params: Mapping[str, object]) -> dict[str, Any]:
    """``params`` as plain Python values for JSON: numpy scalars become ``int``, ``float`` or
    ``bool``, placeholders (None, ``"auto"``) stay as they are.

    Examples
    --------
    >>> plain = plain_params({**defaults(), "max_iterations": np.int64(5)})
    >>> plain["max_iterations"], type(plain["max_iterations"]).__name__, plain["epochs"]
    (5, 'int', None)
    """
    plain = {}
    for name, spec in HYPERPARAMETERS.items():
        value = params[name]
        kind = _kind(name, value, spec)
        plain[name] = value if isinstance(kind, Placeholder) else kind.resolve(value)
    return plain
