"""Figures beside their references, the goals they are held to, and bench/RESULTS.md."""

import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.harness import ROOT, WRK_THREADS, Profile


@dataclass
class Results:
    """What the benchmark groups found, in the order they ran."""

    figures: list["Figure"] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)


@dataclass(frozen=True)
class Goal:
    """What a figure must reach: a ratio to its reference at least or at most ``bound``, or
    (``absolute``) the figure itself below ``bound``."""

    kind: str  # "ratio>=", "ratio<=", "value<"
    bound: float

    def met(self, value: float, ratio: float) -> bool:
        if self.kind == "ratio>=":
            return ratio >= self.bound
        if self.kind == "ratio<=":
            return ratio <= self.bound
        return value < self.bound

    def describe(self, unit: str) -> str:
        if self.kind == "value<":
            return f"< {self.bound:g} {unit}"
        return f"{self.kind.removeprefix('ratio')} {self.bound:g}x"


AT_LEAST = "ratio>="
AT_MOST = "ratio<="
BELOW = "value<"


@dataclass(frozen=True)
class Figure:
    """One measurement of the service beside the same measurement of its reference; ``ratio``
    is always the service's figure over the reference's."""

    path: str
    value: float
    reference: str
    reference_value: float
    unit: str
    goal: Goal
    failures: str = ""  # requests that failed: the figure does not count then

    @property
    def ratio(self) -> float:
        return self.value / self.reference_value

    @property
    def met(self) -> bool:
        return not self.failures and self.goal.met(self.value, self.ratio)


def amount(value: float, unit: str) -> str:
    if unit in ("req/s", "rows/s"):
        return f"{value:,.0f} {unit}"
    if unit == "MB":
        return f"{value:,.0f} MB"
    digits = 3 if value < 1 else 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:,.{digits}f} {unit}"


def ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.01 else f"{ratio:.1g}x"


def table(figures: list[Figure]) -> str:
    lines = [
        "| path | the service | reference | ratio | goal | met? |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        met = "yes" if f.met else f"NO ({f.failures})" if f.failures else "no"
        lines.append(
            f"| {f.path} | {amount(f.value, f.unit)} | {f.reference}: "
            f"{amount(f.reference_value, f.unit)} | {ratio_text(f.ratio)} | "
            f"{f.goal.describe(f.unit)} | {met} |"
        )
    return "\n".join(lines)


def profile_section(profiles: list[Profile]) -> str:
    parts = []
    for p in profiles:
        parts.append(f"### {p.path}\n\n{p.samples:,} samples of running code (200 Hz).\n")
        parts.append("Running (self time):\n")
        parts += [f"- {100 * n / p.samples:4.1f}% `{name}`" for name, n in p.self_top]
        parts.append("\nThe project's functions, with what they call (inclusive):\n")
        parts += [f"- {100 * n / p.samples:4.1f}% `{name}`" for name, n in p.project_top]
        parts.append("")
    return "\n".join(parts)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def _postgres_version(url: str | None) -> str:
    if url is None:
        return "not measured"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


def _commit() -> str:
    done = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "app", "models", "migrations"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes to the service)" if dirty else "")


def machine(postgres_url: str | None) -> str:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("fastapi", "uvicorn", "sqlalchemy", "numpy")
    )
    return "\n".join(
        [
            f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; {_memory_gb():.0f} GB of memory",
            f"- Python {platform.python_version()}; {packages}",
            f"- SQLite {sqlite3.sqlite_version}; PostgreSQL {_postgres_version(postgres_url)}",
            f"- {(wrk.stdout or wrk.stderr).splitlines()[0].split(' [')[0]}",
            f"- The code measured: {_commit()}",
        ]
    )


NOTES = """\
## The references

Each is what a user would write instead, measured in the same run on the same machine:

- **bare FastAPI**: bench/reference_app.py under `uvicorn --workers N` with uvloop and
  httptools, the service's own worker count, and no access log (the service writes its own,
  and that is part of what it is measured doing). `GET /predict` returns a + b * carats;
  `POST /predict` parses the body with orjson into a numpy array, computes the prices and
  their 95% bounds, and answers with orjson; `POST /sales` inserts the sale with a plain sync
  SQLAlchemy transaction under the SQLite settings the service uses (WAL, synchronous NORMAL,
  busy timeout, foreign keys).
- **executemany / COPY**: the same 10,000 rows inserted in one transaction by SQLAlchemy Core
  (`connection.execute(insert(sales), rows)`), and on PostgreSQL by psycopg's binary COPY,
  into the same schema (`jewelry-forecast migrate`).
- **aggregate**: the one query any fit of a line needs, `count, sum x, sum y, sum x^2, sum xy,
  sum y^2` over the same sales table, timed warm through SQLAlchemy.
- **pandas + lstsq**: `pandas.read_sql` of carats and prices, then `numpy.linalg.lstsq` (in
  place of scikit-learn, which the project does not depend on), in a fresh process whose
  peak memory growth is its `ru_maxrss` minus its resident size before reading.

Throughputs are the best of the alternating rounds; a batch's rate on either side is the
best round's mean over batches sent back to back for as long as a wrk round (the database
grows, and now and then checkpoints, alike on both); other times are the best of their repeats;
server memory growth is the peak resident size of the worker during the trainings minus
its size just before the first. Load comes from wrk, with {threads} threads (one a core).
"""


def results_markdown(
    *,
    command: str,
    run_commands: list[str],
    figures: list[Figure],
    profiles: list[Profile],
    postgres_url: str | None,
    elapsed: float,
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    met = sum(f.met for f in figures)
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Written by `{command}` on {when} in {elapsed / 60:.1f} minutes; do not edit by "
            "hand. The machine is shared with other work, so figures move from run to run "
            "(the database writes most): read the ratios, whose two sides are measured "
            "alternately, seconds apart, rather than the figures alone.",
            "",
            "## Machine",
            "",
            machine(postgres_url),
            "",
            "## Results",
            "",
            f"{met} of {len(figures)} goals met.",
            "",
            table(figures),
            "",
            NOTES.format(threads=WRK_THREADS),
            "## Where the time goes",
            "",
            "py-spy on the service's workers during a separate load of each hot path (not "
            "during the measurements above). Self time shows what was running; the "
            "inclusive list shows which of the project's functions the time was spent under. "
            "`Runner.run` stands for the event loop's native work (uvloop, httptools, socket "
            "reads and writes); `Condition.wait` for threads waiting on a lock or for work, "
            "which py-spy cannot always tell from running when it does not stop the process.",
            "",
            profile_section(profiles),
            "## Commands",
            "",
            f"`make bench` runs `python -m bench`; this file came from `{command}`, which ran "
            "these ($WORK is its scratch directory):",
            "",
            "```sh",
            *run_commands,
            "```",
            "",
        ]
    )
