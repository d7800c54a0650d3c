"""Time the predict path of the service, in process, against references from the same run.

(a) GET /api/v1/predict?carats=15 against GET /health/live: what a quote costs beyond the
    framework, middleware and routing every request pays;
(b) POST /api/v1/predict with 100,000 carat values against the same quotes computed by
    numpy alone: what validation and JSON cost per quote.

Run with ``.venv/bin/python bench/bench_predict.py [--requests N]``. Prints ratios; asserts
nothing.
"""

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np

from app.config import Settings
from app.demo import load_demo
from app.main import create_app, prepare_database


def seeded_app() -> object:
    data = Path(tempfile.mkdtemp(prefix="jewelry-bench-"))
    settings = Settings(DATABASE_URL=f"sqlite:///{data / 'bench.db'}", ADMIN_API_KEY="b" * 32)
    app = create_app(settings)
    prepare_database(app.state.db, settings)
    load_demo(app.state.db, settings, n_sales=999)
    return app


async def per_request(send: Callable[[], Awaitable[httpx.Response]], n: int) -> float:
    for _ in range(20):  # warm the model cache and the code paths
        (await send()).raise_for_status()
    start = time.perf_counter()
    for _ in range(n):
        await send()
    return (time.perf_counter() - start) / n


async def main(requests: int) -> None:
    app = seeded_app()
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        live = await per_request(lambda: client.get("/health/live"), requests)
        quote = await per_request(lambda: client.get("/api/v1/predict?carats=15"), requests)
        carats = np.random.default_rng(2).uniform(0.5, 25, 100_000).round(3).tolist()
        bulk = await per_request(lambda: client.post("/api/v1/predict", json={"carats": carats}), 3)
    regressor = app.state.model_cache._model.regressor  # type: ignore[attr-defined]
    x = np.asarray(carats)
    start = time.perf_counter()
    for _ in range(10):
        regressor.predict(x)
        regressor.prediction_interval(x)
    numpy_only = (time.perf_counter() - start) / 10

    print(f"(a) GET /health/live          : {live * 1e6:9.1f} us per request")
    print(f"    GET /api/v1/predict       : {quote * 1e6:9.1f} us per request")
    print(f"    quote / liveness          : {quote / live:9.2f}x")
    print(
        f"(b) POST /predict, 100k carats: {bulk * 1e3:9.1f} ms ({bulk / 1e5 * 1e6:.2f} us a quote)"
    )
    print(f"    numpy alone, 100k carats  : {numpy_only * 1e3:9.1f} ms")
    print(f"    HTTP / numpy              : {bulk / numpy_only:9.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args().requests))
