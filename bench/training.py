"""Training: ``POST /api/v1/train`` on 1M sales (SQLite and PostgreSQL) and 10M (SQLite)
against the bare five-sum aggregate over the same table; for the largest, the worker's memory
growth, and what a user would write instead: pandas.read_sql + numpy.linalg.lstsq."""

import multiprocessing
import resource
import time
from functools import partial
from multiprocessing.queues import Queue

import httpx
import numpy as np
from sqlalchemy import create_engine

from bench import databases
from bench.harness import (
    ADMIN_KEY,
    PeakRss,
    Run,
    Server,
    best_time,
    profile,
    rss_bytes,
    say,
    service,
)
from bench.report import AT_MOST, BELOW, Figure, Goal, Results

TIME_GOAL = 1.3  # x the aggregate
PANDAS_GOAL = 0.1  # x pandas' time: ten times faster
MEMORY_GOAL_MB = 50.0
MB = 1e6
PROFILE_SECONDS = 3.0


def cases(run: Run) -> list[tuple[str, int]]:
    small, large = (100_000, 1_000_000) if run.quick else (1_000_000, 10_000_000)
    found = [("SQLite", small)]
    if run.postgres_url is not None:
        found.append(("PostgreSQL", small))
    return [*found, ("SQLite", large)]


def measure(run: Run, results: Results) -> None:
    all_cases = cases(run)
    for backend, n in all_cases:
        _case(run, results, backend, n, largest=(backend, n) == all_cases[-1])


def _case(run: Run, results: Results, backend: str, n: int, *, largest: bool) -> None:
    data = run.workdir / f"training-{backend.lower()}-{n}"
    sqlite = backend == "SQLite"
    url = databases.sqlite_url(data / "jewelry.db") if sqlite else str(run.postgres_url)
    databases.prepare(run, url, data)
    db = databases.engine(url)
    start = time.perf_counter()
    databases.fill_sales(db, databases.add_store(db, "bench"), n)
    say(f"  {n:,} sales into {backend} in {time.perf_counter() - start:.1f} s")

    repeats = 2 if run.quick else 3
    path = f"`POST /api/v1/train`, {n:,} sales, {backend}"
    with service(run, data, workers=1, database_url=None if sqlite else url) as ours:
        databases.five_sums(db)  # warm, as the first training warms the service
        with PeakRss(ours.worker_pids()) as memory:
            _train(ours)
            train_s, aggregate_s = float("inf"), float("inf")
            for _ in range(repeats):  # alternating: both sides see the same machine
                train_s = min(train_s, best_time(partial(_train, ours), 1))
                aggregate_s = min(aggregate_s, best_time(partial(databases.five_sums, db), 1))
        results.figures.append(
            Figure(
                path,
                train_s,
                "the five-sum aggregate query",
                aggregate_s,
                "s",
                Goal(AT_MOST, TIME_GOAL),
            )
        )
        if run.profile:
            # Trainings one after another for a few seconds: enough samples for a summary.
            seconds = max(PROFILE_SECONDS, train_s)
            results.profiles.append(
                profile(
                    run,
                    ours,
                    path.replace("`", ""),
                    seconds + 1,
                    partial(_train_for, ours, seconds),
                )
            )
    db.dispose()
    if largest:
        _against_pandas(results, path, url, train_s, (memory.peak - memory.before) / MB)


def _train_for(server: Server, seconds: float) -> None:
    start = time.perf_counter()
    _train(server)
    while time.perf_counter() - start < seconds:
        _train(server)


# One client for every request: httpx.post() builds a client, and its TLS context, per call,
# which took 20-60 ms on this machine, all of it counted against the service.
_client = httpx.Client(timeout=600)


def _train(server: Server) -> None:
    answer = _client.post(server.url + "/api/v1/train", headers={"X-API-Key": ADMIN_KEY})
    if answer.status_code != 201:
        raise RuntimeError(f"training answered {answer.status_code}: {answer.text[:500]}")


def _against_pandas(
    results: Results, path: str, url: str, train_s: float, growth_mb: float
) -> None:
    context = multiprocessing.get_context("spawn")
    queue: Queue[tuple[float, float]] = context.Queue()
    child = context.Process(target=pandas_fit, args=(url, queue))
    child.start()
    pandas_s, pandas_mb = queue.get(timeout=1800)
    child.join()
    results.figures += [
        Figure(
            path,
            train_s,
            "pandas.read_sql + numpy.linalg.lstsq",
            pandas_s,
            "s",
            Goal(AT_MOST, PANDAS_GOAL),
        ),
        Figure(
            f"{path}: the worker's memory growth",
            growth_mb,
            "pandas.read_sql + numpy.linalg.lstsq",
            pandas_mb,
            "MB",
            Goal(BELOW, MEMORY_GOAL_MB),
        ),
    ]


def pandas_fit(url: str, queue: "Queue[tuple[float, float]]") -> None:
    """What a user would write to fit the line (in a fresh process, so that its memory is its
    own): the seconds it takes and the memory it grows by."""
    import pandas as pd  # type: ignore[import-untyped]  # pandas ships no type information

    before = rss_bytes(multiprocessing.current_process().pid or 0)
    start = time.perf_counter()
    frame = pd.read_sql("SELECT carats, price_cents FROM sales", create_engine(url))
    x = np.column_stack([np.ones(len(frame)), frame["carats"].to_numpy()])
    y = frame["price_cents"].to_numpy() / 100
    np.linalg.lstsq(x, y, rcond=None)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    queue.put((seconds, (peak - before) / MB))
