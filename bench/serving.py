"""Quotes: ``GET /api/v1/predict?carats=15`` with 1 and 2 workers under 32 connections, and
``POST /api/v1/predict`` with 100,000 carats on one connection, against bare FastAPI."""

from functools import partial
from pathlib import Path

import numpy as np
import orjson

from bench.harness import (
    Run,
    Server,
    WrkResult,
    jewelry_forecast,
    profile,
    reference,
    service,
    service_env,
    side_by_side,
    workers_text,
    wrk,
)
from bench.report import AT_LEAST, AT_MOST, Figure, Goal, Results

QUOTE_CONNECTIONS = 32
MANY_CARATS = 100_000


def measure(run: Run, results: Results) -> None:
    data = run.workdir / "serving"
    # Demo data and a trained model: the service quotes from its active model.
    jewelry_forecast(run, "demo", env=service_env(data, None))
    body = data / "carats.json"
    carats = np.random.default_rng(2).uniform(0.5, 25, MANY_CARATS).round(3)
    body.write_bytes(orjson.dumps({"carats": carats.tolist()}))

    for workers in (1, 2):
        _quotes(run, results, data, workers, str(body))


def _quotes(run: Run, results: Results, data: Path, workers: int, body: str) -> None:
    with service(run, data, workers=workers) as ours, reference(run, workers=workers) as bare:

        def quote(server: Server, path: str, seconds: float) -> WrkResult:
            return wrk(run, server.url + path, connections=QUOTE_CONNECTIONS, seconds=seconds)

        ours_path, bare_path = "/api/v1/predict?carats=15", "/predict?carats=15"
        got, ref = side_by_side(
            run,
            partial(quote, ours, ours_path),
            partial(quote, bare, bare_path),
            better=lambda r: r.requests_per_second,
        )
        results.figures.append(
            Figure(
                f"`GET {ours_path}`, {workers_text(workers)}, {QUOTE_CONNECTIONS} connections",
                got.requests_per_second,
                "bare FastAPI, a + b * carats",
                ref.requests_per_second,
                "req/s",
                Goal(AT_LEAST, 0.9),
                got.describe_failures(),
            )
        )
        if run.profile:
            results.profiles.append(
                profile(
                    run,
                    ours,
                    f"GET /api/v1/predict, {workers_text(workers)}",
                    3,
                    partial(quote, ours, ours_path, 3),
                )
            )
        if workers == 1:
            _many_quotes(run, results, ours, bare, body)


def _many_quotes(run: Run, results: Results, ours: Server, bare: Server, body: str) -> None:
    def post(url: str, seconds: float) -> WrkResult:
        return wrk(run, url, connections=1, seconds=seconds, script="post.lua", script_args=[body])

    got, ref = side_by_side(
        run,
        partial(post, ours.url + "/api/v1/predict"),
        partial(post, bare.url + "/predict"),
        better=lambda r: -r.latency_p50,
    )
    results.figures.append(
        Figure(
            f"`POST /api/v1/predict`, {MANY_CARATS:,} carats, 1 connection (median)",
            got.latency_p50 * 1e3,
            "bare FastAPI, orjson to numpy to orjson",
            ref.latency_p50 * 1e3,
            "ms",
            Goal(AT_MOST, 2.0),
            got.describe_failures(),
        )
    )
    if run.profile:
        results.profiles.append(
            profile(
                run,
                ours,
                f"POST /api/v1/predict, {MANY_CARATS:,} carats",
                3,
                lambda: post(ours.url + "/api/v1/predict", 3),
            )
        )
