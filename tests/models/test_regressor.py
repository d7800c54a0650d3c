"""Estimator API: parameters, refusals, divergence, prediction, serialisation."""

from __future__ import annotations

import inspect
import json
import math
import re

import numpy as np
import pytest

from models import (
    DivergenceError,
    InvalidParameterError,
    ModelError,
    NonFiniteDataError,
    NotFittedError,
    RingPriceRegressor,
    SufficientStats,
)
from models.descent import FeatureSpace, Quadratic
from models.params import HYPERPARAMETERS

X3 = [1.0, 2.0, 3.0]
Y3 = [150.0, 250.0, 250.0]


def json_safe(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_safe(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or type(value) in (str, int, bool)


def test_init_only_stores_and_get_params() -> None:
    reg = RingPriceRegressor(learning_rate=-5, method="nonsense")
    assert reg.get_params()["learning_rate"] == -5
    assert set(reg.get_params()) == {
        "learning_rate",
        "max_iterations",
        "tolerance",
        "feature_scaling",
        "method",
        "batch_size",
        "epochs",
        "random_seed",
    }
    assert reg.set_params(learning_rate=0.1, method="batch") is reg
    assert reg.learning_rate == 0.1
    with pytest.raises(InvalidParameterError, match="unknown parameter 'alpha'"):
        reg.set_params(alpha=1)
    with pytest.raises(TypeError):
        RingPriceRegressor(0.1)  # type: ignore[misc]
    assert repr(RingPriceRegressor(tolerance=0)) == "RingPriceRegressor(tolerance=0)"


def test_the_table_holds_the_defaults_init_declares() -> None:
    signature = inspect.signature(RingPriceRegressor)
    assert {name: p.default for name, p in signature.parameters.items()} == {
        name: spec.default for name, spec in HYPERPARAMETERS.items()
    }


def test_numpy_scalars_are_accepted_and_resolved() -> None:
    reg = RingPriceRegressor(
        max_iterations=np.int64(50), tolerance=np.float32(0.0), feature_scaling=np.bool_(True)
    )
    hp = reg._hyperparameters()
    assert (hp.max_iterations, hp.tolerance, hp.feature_scaling) == (50, 0.0, True)
    assert type(hp.max_iterations) is int and type(hp.feature_scaling) is bool


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"learning_rate": 0}, "learning_rate must be 'auto' or a finite number > 0, got 0"),
        ({"learning_rate": "fast"}, "learning_rate must be 'auto'"),
        ({"learning_rate": math.nan}, "learning_rate must be 'auto'"),
        ({"learning_rate": True}, "learning_rate must be 'auto'"),
        ({"max_iterations": 0}, "max_iterations must be None or an integer >= 1, got 0"),
        ({"max_iterations": 2.5}, "max_iterations must be None or an integer >= 1"),
        ({"tolerance": -1e-3}, "tolerance must be a finite number >= 0"),
        ({"tolerance": math.inf}, "tolerance must be a finite number >= 0"),
        ({"feature_scaling": "yes"}, "feature_scaling must be True or False"),
        ({"method": "adam"}, "method must be one of batch, minibatch, sgd, got 'adam'"),
        ({"method": "minibatch", "batch_size": 0}, "batch_size must be None or an integer >= 1"),
        ({"method": "sgd", "batch_size": 8}, "batch_size must be None or 1 with method 'sgd'"),
        ({"method": "sgd", "epochs": -1}, "epochs must be None or an integer >= 1"),
        ({"random_seed": -3}, "random_seed must be None or an integer >= 0"),
        ({"random_seed": "abc"}, "random_seed must be None or an integer >= 0"),
    ],
)
def test_bad_hyperparameters_refused_in_fit(params: dict, message: str) -> None:
    reg = RingPriceRegressor(**params)
    with pytest.raises(InvalidParameterError, match=message):
        reg.fit(X3, Y3)
    with pytest.raises(InvalidParameterError):
        reg.fit_stats(SufficientStats.from_arrays(X3, Y3))


def test_divergent_rate_refused_up_front_with_the_limit() -> None:
    x = np.array([1.0, 2.0, 3.0])
    q = Quadratic.from_stats(SufficientStats.from_arrays(x, x * 3), FeatureSpace.raw())
    lo, hi = q.hessian_eigenvalues()
    # Hessian of J in raw space: [[1, 2], [2, 14/3]]
    assert hi == pytest.approx(np.linalg.eigvalsh([[1, 2], [2, 14 / 3]])[1], rel=1e-14)
    assert lo == pytest.approx(np.linalg.eigvalsh([[1, 2], [2, 14 / 3]])[0], rel=1e-12)
    limit = 2 / hi
    for rate in (limit, 1.0, 14.0):
        reg = RingPriceRegressor(learning_rate=rate, feature_scaling=False, tolerance=0)
        with pytest.raises(DivergenceError) as caught:
            reg.fit(x, x * 3)
        err = caught.value
        assert err.max_stable_learning_rate == pytest.approx(limit, rel=1e-14)
        assert err.learning_rate == rate
        assert err.feature_space == "raw"
        message = str(err)
        assert f"stable rates are below {limit:.6g}" in message
        assert "raw feature space" in message
        assert "\n" not in message
        # The rate it suggests is below the limit, and a fit with it converges.
        suggested = float(re.search(r"use ([0-9.e-]+) or 'auto'", message).group(1))
        assert suggested < limit
        fitted = RingPriceRegressor(learning_rate=suggested, feature_scaling=False).fit(x, x * 3)
        assert fitted.converged_
    # Just below the limit is accepted and does not blow up.
    reg = RingPriceRegressor(learning_rate=0.99 * limit, feature_scaling=False, tolerance=0)
    assert math.isfinite(reg.fit(x, x * 3).silver_price_)


def test_divergent_rate_in_scaled_space_names_limit_2() -> None:
    with pytest.raises(DivergenceError, match=r"stable rates are below 2 .*scaled.*use 1.99 "):
        RingPriceRegressor(learning_rate=2.0).fit(X3, Y3)
    reg = RingPriceRegressor(learning_rate=1.9).fit(X3, Y3)
    assert reg.converged_ is True


def test_runtime_divergence_detected_when_up_front_check_is_bypassed(monkeypatch) -> None:
    import models.descent as descent

    monkeypatch.setattr(descent.Stability, "check", lambda *args: None)
    with pytest.raises(DivergenceError, match="the cost rose at iteration 1") as caught:
        RingPriceRegressor(learning_rate=1.0, feature_scaling=False).fit(X3, Y3)
    assert caught.value.max_stable_learning_rate < 1.0


def test_runtime_check_tolerates_noise_at_optimum() -> None:
    # Many iterations at the optimum: float noise in the cost must not read as divergence.
    rng = np.random.default_rng(0)
    x = rng.uniform(1000.0, 1000.5, 300)
    y = 30.0 + 50.0 * x
    reg = RingPriceRegressor(learning_rate=1.5, tolerance=0, max_iterations=3000).fit(x, y)
    assert reg.n_iter_ == 3000
    assert reg.optimum_gap_ < 1e-9


def test_not_fitted() -> None:
    reg = RingPriceRegressor()
    for call in (lambda: reg.predict([1.0]), lambda: reg.prediction_interval([1.0]), reg.to_dict):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call()


def test_predict_shapes_and_refusals() -> None:
    reg = RingPriceRegressor().fit(X3, Y3)
    assert reg.predict(np.array([[1.0, 2.0]])).shape == (1, 2)
    assert float(reg.predict(15.0)) == pytest.approx(350 / 3 + 750)
    with pytest.raises(NonFiniteDataError, match="finite"):
        reg.predict([math.nan])
    with pytest.raises(NonFiniteDataError, match="overflows"):
        reg.predict([1e307])
    with pytest.raises(ModelError):
        reg.predict(["x"])


def test_serialisation_round_trip() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(1.0, 25.0, 50)
    y = 30 + 50 * x + rng.normal(0, 10, 50)
    for reg in (
        RingPriceRegressor().fit(x, y),
        RingPriceRegressor(method="sgd", epochs=3, random_seed=4).fit(x, y),
        RingPriceRegressor(
            learning_rate=0.005, max_iterations=50, tolerance=0, feature_scaling=False
        ).fit(x, y),
        RingPriceRegressor().fit([1.0, 2.0], [3.0, 5.0]),
    ):
        data = reg.to_dict()
        assert json_safe(data)
        text = json.dumps(data, allow_nan=False)
        again = RingPriceRegressor.from_dict(json.loads(text))
        probe = np.array([0.5, 7.0, 18.25, 300.0])
        assert again.predict(probe).tolist() == reg.predict(probe).tolist()
        a, b = again.prediction_interval(probe), reg.prediction_interval(probe)
        if b is None:
            assert a is None
        else:
            assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
        assert again.report_ == reg.report_
        assert again.cost_history_ == reg.cost_history_
        assert again.get_params() == reg.get_params()
        assert again.to_dict() == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "not a serialised RingPriceRegressor"),
        ([], "not a serialised RingPriceRegressor"),
        ({"format": "ring-price-regressor/1"}, "malformed"),
    ],
)
def test_from_dict_refusals(data, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        RingPriceRegressor.from_dict(data)


def test_from_dict_refuses_bad_params_and_prices() -> None:
    good = RingPriceRegressor().fit(X3, Y3).to_dict()
    bad = json.loads(json.dumps(good))
    bad["params"]["method"] = "adam"
    with pytest.raises(InvalidParameterError, match="method must be one of"):
        RingPriceRegressor.from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["stats"]["sum_xx"] = -1
    with pytest.raises(InvalidParameterError, match="serialised regressor is invalid"):
        RingPriceRegressor.from_dict(bad)


def test_the_serving_form_keeps_what_quotes_need_and_rebuilds_the_report() -> None:
    reg = RingPriceRegressor().fit([1.0, 2.0, 3.0, 4.5], [150.0, 250.0, 250.0, 380.0])
    served = json.loads(json.dumps(reg.to_dict(serving=True)))
    assert "cost_history" not in served and "report" not in served
    again = RingPriceRegressor.from_dict(served)
    probe = [0.5, 2.0, 40.0]
    assert again.predict(probe).tolist() == reg.predict(probe).tolist()
    low, high = again.prediction_interval(probe)  # type: ignore[misc]
    want_low, want_high = reg.prediction_interval(probe)  # type: ignore[misc]
    assert low.tolist() == want_low.tolist() and high.tolist() == want_high.tolist()
    # Everything the statistics give is rebuilt exactly; the MAE needs the rows.
    assert again.report_ == reg.report_.with_mae(None)
    assert len(again.cost_history_) == 0
