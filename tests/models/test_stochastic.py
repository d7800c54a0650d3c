"""Mini-batch and stochastic descent: seeded, reproducible, close to the optimum, streamable."""

from __future__ import annotations

import numpy as np
import pytest

from models import (
    DivergenceError,
    InvalidParameterError,
    MismatchedLengthError,
    NonFiniteDataError,
    RingPriceRegressor,
    SufficientStats,
)


@pytest.fixture(scope="module")
def low_noise() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.uniform(0.5, 25.0, 2000)
    return x, 30.0 + 50.0 * x + rng.normal(0.0, 1.0, x.size)


def chunked(x: np.ndarray, y: np.ndarray, size: int):
    calls = []

    def chunks():
        calls.append(1)
        return ((x[i : i + size], y[i : i + size]) for i in range(0, x.size, size))

    return chunks, calls


@pytest.mark.parametrize(("method", "epochs"), [("minibatch", None), ("sgd", 20)])
def test_lands_within_one_percent_of_optimum(low_noise, method: str, epochs) -> None:
    # Tested tolerance: each price within 1% of the closed-form optimum on low-noise data
    # (noise sd $1 on prices of $55 to $1280); in practice the gap is about 1e-4.
    x, y = low_noise
    reg = RingPriceRegressor(method=method, epochs=epochs, random_seed=5).fit(x, y)
    silver, gold = reg.optimum_
    assert reg.silver_price_ == pytest.approx(silver, rel=1e-2)
    assert reg.gold_price_per_carat_ == pytest.approx(gold, rel=1e-2)
    assert reg.optimum_gap_ < 1e-2
    assert reg.report_.mae is not None
    assert len(reg.cost_history_) == (epochs or 50) + 1  # the start and each epoch


@pytest.mark.parametrize("method", ["minibatch", "sgd"])
def test_same_seed_same_fit_other_seed_other_fit(low_noise, method: str) -> None:
    x, y = low_noise
    x, y = x[:500], y[:500]

    def fit(seed: int) -> RingPriceRegressor:
        return RingPriceRegressor(method=method, epochs=5, random_seed=seed).fit(x, y)

    a, b, c = fit(1), fit(1), fit(2)
    assert (a.silver_price_, a.gold_price_per_carat_) == (b.silver_price_, b.gold_price_per_carat_)
    assert a.cost_history_ == b.cost_history_
    assert a.silver_price_ != c.silver_price_


def test_fit_chunks_bounded_passes_and_matches_one_chunk_fit(low_noise) -> None:
    x, y = low_noise
    stats = SufficientStats.from_arrays(x, y)
    chunks, calls = chunked(x, y, x.size)
    streamed = RingPriceRegressor(method="minibatch", epochs=4, random_seed=3).fit_chunks(
        stats, chunks
    )
    # Once per epoch, plus one pass for the largest carats (the stability limit) and one for
    # the mean absolute error.
    assert len(calls) == 6
    in_memory = RingPriceRegressor(method="minibatch", epochs=4, random_seed=3).fit(x, y)
    assert streamed.silver_price_ == in_memory.silver_price_
    assert streamed.gold_price_per_carat_ == in_memory.gold_price_per_carat_
    assert streamed.report_.mae == pytest.approx(in_memory.report_.mae, rel=1e-12)


def test_fit_chunks_many_small_chunks_converges(low_noise) -> None:
    x, y = low_noise
    chunks, _ = chunked(x, y, 128)
    reg = RingPriceRegressor(method="minibatch", batch_size=16, random_seed=0).fit_chunks(
        SufficientStats.from_arrays(x, y), chunks
    )
    assert reg.optimum_gap_ < 1e-2


def test_fit_chunks_with_batch_method_uses_stats_and_measures_mae(low_noise) -> None:
    x, y = low_noise
    chunks, calls = chunked(x, y, 300)
    reg = RingPriceRegressor().fit_chunks(SufficientStats.from_arrays(x, y), chunks)
    assert len(calls) == 1
    expected = np.mean(np.abs(y - reg.predict(x)))
    assert reg.report_.mae == pytest.approx(expected, rel=1e-12)
    assert reg.converged_ is True


def test_chunks_must_match_the_statistics(low_noise) -> None:
    x, y = low_noise
    chunks, _ = chunked(x[:-1], y[:-1], 500)
    reg = RingPriceRegressor(method="sgd", epochs=1, random_seed=0)
    with pytest.raises(
        MismatchedLengthError, match="hold 1999 sales but the statistics describe 2000"
    ):
        reg.fit_chunks(SufficientStats.from_arrays(x, y), chunks)


def test_chunks_are_validated(low_noise) -> None:
    x, y = low_noise
    bad_y = y.copy()
    bad_y[3] = np.nan

    def chunks():
        return [(x, bad_y)]

    with pytest.raises(NonFiniteDataError, match="first at index 3"):
        RingPriceRegressor(method="minibatch").fit_chunks(SufficientStats.from_arrays(x, y), chunks)


def test_fit_stats_refuses_row_methods() -> None:
    stats = SufficientStats.from_arrays([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    for method in ("minibatch", "sgd"):
        with pytest.raises(InvalidParameterError, match=f"method '{method}' needs the rows"):
            RingPriceRegressor(method=method).fit_stats(stats)


def test_stochastic_rate_above_limit_refused(low_noise) -> None:
    x, y = low_noise
    with pytest.raises(DivergenceError, match=r"a batch of 32 holding the sale farthest") as caught:
        RingPriceRegressor(method="minibatch", learning_rate=2.5, random_seed=0).fit(x, y)
    # Scaled carats have mean 0 and variance 1, so the whole cost's curvature is 1; a batch of
    # 32 holding the farthest sale has about (1 + z^2) / 32 + 31 / 32.
    z = (x - x.mean()) / x.std()
    worst = (1.0 + np.max(z * z)) / 32 + 31 / 32
    assert caught.value.max_stable_learning_rate == pytest.approx(2.0 / worst)
    assert caught.value.feature_space == "scaled"


def test_stochastic_runtime_divergence_detected(low_noise, monkeypatch) -> None:
    import models.descent as descent

    monkeypatch.setattr(descent.Stability, "check", lambda *args: None)
    x, y = low_noise
    with pytest.raises(DivergenceError, match="in epoch 1"):
        RingPriceRegressor(method="sgd", learning_rate=50.0, epochs=3, random_seed=0).fit(
            x[:200], y[:200]
        )


def test_stochastic_early_stop_on_exact_data() -> None:
    x = np.linspace(1.0, 10.0, 64)
    reg = RingPriceRegressor(method="minibatch", tolerance=1e-3, random_seed=0).fit(
        x, 30.0 + 50.0 * x
    )
    assert reg.converged_ is True
    assert len(reg.cost_history_) < 50


@pytest.mark.parametrize("method", ["sgd", "minibatch"])
def test_one_sale_far_from_the_rest_neither_breaks_auto_nor_loops_the_advice(method) -> None:
    """A step on the far sale alone is unstable at rates the whole cost allows: 'auto' stays
    under that sale's limit, and a refused rate's advice is a rate that runs."""
    rng = np.random.default_rng(5)
    x = np.append(rng.uniform(0.5, 3.0, 300), 10_000.0)
    y = np.append(100.0 + 300.0 * x[:-1] + rng.normal(0, 20, 300), 10.0)
    fitted = RingPriceRegressor(method=method, epochs=5, random_seed=0).fit(x, y)
    assert np.isfinite(fitted.silver_price_) and np.isfinite(fitted.gold_price_per_carat_)
    assert fitted.learning_rate_ < fitted.max_stable_learning_rate_

    with pytest.raises(DivergenceError, match="the sale farthest from the others") as caught:
        RingPriceRegressor(method=method, learning_rate=0.5, epochs=5, random_seed=0).fit(x, y)
    advised = float(str(caught.value).rsplit("use ", 1)[1].split(" or")[0])
    again = RingPriceRegressor(method=method, learning_rate=advised, epochs=5, random_seed=0)
    assert np.isfinite(again.fit(x, y).silver_price_)
