"""Run the benchmarks, print each figure beside its reference, and write bench/RESULTS.md.

``make bench`` runs ``python -m bench``; ``make bench BENCH_ARGS=--quick`` a short run. The
service runs from this checkout (``.venv/bin/jewelry-forecast serve``) on scratch databases:
SQLite files in a temporary directory, and the PostgreSQL database given by --postgres, whose
public schema each benchmark drops and migrates anew.
"""

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from bench import ingest, serving, training
from bench.harness import BENCH_DIR, Run, ensure_wrk, say
from bench.report import Results, results_markdown, table

GROUPS: dict[str, Callable[[Run, Results], None]] = {
    "serving": serving.measure,
    "ingest": ingest.measure,
    "training": training.measure,
}
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test_bench"


def _reachable(url: str) -> bool:
    """Whether the database answers, created first if the server answers without it (a fresh
    machine has only the test suite's database)."""
    return _answers(url) or (_created(url) and _answers(url))


def _answers(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _created(url: str) -> bool:
    target = make_url(url)
    server = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            name = server.dialect.identifier_preparer.quote(target.database or "")
            conn.execute(text(f"CREATE DATABASE {name}"))
        return True
    except SQLAlchemyError:
        return False
    finally:
        server.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="shorter loads, 100k/1M sales for 1M/10M"
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(GROUPS), help="run only this group (repeatable)"
    )
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help=f"the database the PostgreSQL figures use (its public schema is dropped); "
        f"'' for none; default {DEFAULT_POSTGRES}",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument(
        "--output", type=Path, default=BENCH_DIR / "RESULTS.md", help="default bench/RESULTS.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    ensure_wrk()

    postgres: str | None = args.postgres or None
    if postgres is not None and not _reachable(postgres):
        say(f"PostgreSQL at {postgres} does not answer: its figures are left out")
        postgres = None
    workdir = Path(tempfile.mkdtemp(prefix="jewelry-bench-"))
    run = Run(workdir, args.quick, postgres, profile=not args.no_profile)
    results = Results()
    started = time.perf_counter()
    try:
        for name in args.only or list(GROUPS):
            say(f"== {name}")
            GROUPS[name](run, results)
    finally:
        if args.keep:
            say(f"scratch directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    say(table(results.figures))
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    args.output.write_text(
        results_markdown(
            command=command,
            run_commands=run.commands,
            figures=results.figures,
            profiles=results.profiles,
            postgres_url=postgres,
            elapsed=time.perf_counter() - started,
        )
    )
    say(f"written to {args.output}")
    return 0
