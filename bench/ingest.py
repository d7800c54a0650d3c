"""Recording sales: ``POST /api/v1/sales`` one sale a request (with and without an
Idempotency-Key) against a plain SQLAlchemy insert behind bare FastAPI, and
``POST /api/v1/sales/batch`` with 10,000 records against SQLAlchemy Core's executemany of the
same rows, and on PostgreSQL against psycopg's COPY too."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psycopg
from sqlalchemy import Engine, insert

from bench import databases
from bench.harness import (
    ADMIN_KEY,
    Run,
    Server,
    WrkResult,
    best_mean_time,
    profile,
    reference,
    service,
    side_by_side,
    wrk,
)
from bench.report import AT_LEAST, BELOW, Figure, Goal, Results

SALE_WORKERS = 2
SALE_CONNECTIONS = 16
SALE = {"carats": 2.5, "price": "250.10", "sold_at": "2026-11-20T14:30:00Z"}
BATCH = 10_000
P99_GOAL_MS = 100.0


def measure(run: Run, results: Results) -> None:
    data = run.workdir / "ingest"
    ours_url = databases.sqlite_url(data / "jewelry.db")
    databases.prepare(run, ours_url, data)
    bare_url = databases.sqlite_url(data / "reference.db")
    databases.prepare(run, bare_url, data)
    bare_db = databases.engine(bare_url)
    store_id = databases.add_store(bare_db, "reference")

    sale_body = data / "sale.json"
    sale_body.write_bytes(orjson.dumps(SALE))
    batch_body, rows = _batch(data, store_id)

    with (
        service(run, data, workers=SALE_WORKERS) as ours,
        reference(run, workers=SALE_WORKERS, env={"BENCH_REFERENCE_DB": bare_url}) as bare,
    ):
        key = _store_key(ours)
        for idempotent in (False, True):
            _single_sales(run, results, ours, bare, str(sale_body), key, idempotent=idempotent)
        _batches(run, results, ours, key, batch_body, "SQLite", bare_db, rows)
    bare_db.dispose()

    if run.postgres_url is not None:
        pg = run.postgres_url
        databases.prepare(run, pg, data / "postgres")
        with service(run, data / "postgres", workers=SALE_WORKERS, database_url=pg) as ours:
            key = _store_key(ours)
            pg_db = databases.engine(pg)
            pg_store = databases.add_store(pg_db, "reference")
            pg_rows = [{**row, "store_id": pg_store} for row in rows]
            _batches(run, results, ours, key, batch_body, "PostgreSQL", pg_db, pg_rows)
            pg_db.dispose()


def _store_key(server: Server) -> str:
    """A store registered through the API, and its key: sales come in as from a till."""
    answer = httpx.post(
        server.url + "/api/v1/stores",
        json={"name": f"bench {uuid.uuid4().hex[:8]}"},
        headers={"X-API-Key": ADMIN_KEY},
    )
    answer.raise_for_status()
    key: str = answer.json()["api_key"]
    return key


def _single_sales(
    run: Run,
    results: Results,
    ours: Server,
    bare: Server,
    body: str,
    key: str,
    *,
    idempotent: bool,
) -> None:
    load = partial(wrk, run, connections=SALE_CONNECTIONS, script="post.lua")

    def keys() -> list[str]:
        # Each wrk counts its requests from 1: a word of its own keeps its keys unique.
        return ["idempotent", uuid.uuid4().hex[:12]] if idempotent else []

    def ours_load(seconds: float) -> WrkResult:
        args = [body, key, *keys()]
        return load(ours.url + "/api/v1/sales", seconds=seconds, script_args=args)

    def bare_load(seconds: float) -> WrkResult:
        # The same requests, keys included (which it ignores): wrk writing a request per key
        # costs it CPU that the machine's two cores share with the server.
        return load(bare.url + "/sales", seconds=seconds, script_args=[body, "-", *keys()])

    got, ref = side_by_side(run, ours_load, bare_load, better=lambda r: r.requests_per_second)
    how = "with" if idempotent else "without"
    path = (
        f"`POST /api/v1/sales`, one sale, {how} Idempotency-Key, {SALE_WORKERS} workers, "
        f"{SALE_CONNECTIONS} connections"
    )
    plain = "bare FastAPI, plain SQLAlchemy insert"
    failures = got.describe_failures()
    results.figures += [
        Figure(
            path,
            got.requests_per_second,
            plain,
            ref.requests_per_second,
            "req/s",
            Goal(AT_LEAST, 1.5),
            failures,
        ),
        Figure(
            f"the same, p99 latency (p50 {got.latency_p50 * 1e3:.1f} ms against "
            f"{ref.latency_p50 * 1e3:.1f} ms)",
            got.latency_p99 * 1e3,
            plain,
            ref.latency_p99 * 1e3,
            "ms",
            Goal(BELOW, P99_GOAL_MS),
            failures,
        ),
    ]
    if run.profile:
        results.profiles.append(
            profile(
                run, ours, f"POST /api/v1/sales, {how} Idempotency-Key", 3, lambda: ours_load(3)
            )
        )


def _batch(data: Path, store_id: int) -> tuple[Path, list[dict[str, Any]]]:
    """The batch as JSON for the service, and the same sales as rows for the references."""
    rng = np.random.default_rng(9)
    carats = rng.uniform(0.01, 25, BATCH).round(3)
    cents = (3000 + 5000 * carats + rng.integers(-1000, 1000, BATCH)).astype(np.int64)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sold = [start + timedelta(seconds=i) for i in range(BATCH)]
    records = [
        {
            "carats": float(c),
            "price": f"{p // 100}.{p % 100:02d}",
            "sold_at": t.isoformat().replace("+00:00", "Z"),
        }
        for c, p, t in zip(carats, cents.tolist(), sold, strict=True)
    ]
    path = data / "batch.json"
    path.write_bytes(orjson.dumps({"records": records}))
    now = datetime.now(UTC)
    rows = [
        {
            "store_id": store_id,
            "carats": float(c),
            "price_cents": p,
            "sold_at": t,
            "created_at": now,
        }
        for c, p, t in zip(carats, cents.tolist(), sold, strict=True)
    ]
    return path, rows


def _batches(
    run: Run,
    results: Results,
    ours: Server,
    key: str,
    body: Path,
    backend: str,
    db: Engine,
    rows: list[dict[str, Any]],
) -> None:
    def post(seconds: float) -> WrkResult:
        return wrk(
            run,
            ours.url + "/api/v1/sales/batch",
            connections=1,
            seconds=seconds,
            script="post.lua",
            script_args=[str(body), key],
        )

    post(1)
    got = max((post(run.seconds) for _ in range(run.rounds)), key=lambda r: -r.latency_mean)
    ours_rate = BATCH / got.latency_mean
    sales = databases.table(db, "sales")

    def executemany() -> None:
        with db.begin() as conn:
            conn.execute(insert(sales), rows)

    def timed(func: Callable[[], object]) -> float:
        return best_mean_time(func, run.seconds, run.rounds)

    path = f"`POST /api/v1/sales/batch`, {BATCH:,} records, {backend}"
    results.figures.append(
        Figure(
            path,
            ours_rate,
            "SQLAlchemy Core executemany",
            BATCH / timed(executemany),
            "rows/s",
            Goal(AT_LEAST, 0.5),
            got.describe_failures(),
        )
    )
    if backend == "PostgreSQL":
        results.figures.append(
            Figure(
                path,
                ours_rate,
                "psycopg binary COPY",
                BATCH / _copy_seconds(db, rows, timed),
                "rows/s",
                Goal(AT_LEAST, 0.5),
                got.describe_failures(),
            )
        )
    if run.profile:
        results.profiles.append(profile(run, ours, path.replace("`", ""), 3, lambda: post(3)))


def _copy_seconds(
    db: Engine, rows: list[dict[str, Any]], timed: Callable[[Callable[[], object]], float]
) -> float:
    """The time psycopg takes to COPY the rows in, binary, on one open connection."""
    columns = ("store_id", "carats", "price_cents", "sold_at", "created_at")
    statement = f"COPY sales ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:

        def copy() -> None:
            with conn.cursor() as cursor, cursor.copy(statement) as copying:
                copying.set_types(["int8", "float8", "int8", "timestamptz", "timestamptz"])
                for row in rows:
                    copying.write_row([row[c] for c in columns])
            conn.commit()

        return timed(copy)
