"""Metrics shared between worker processes (prometheus_client's multiprocess mode)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(directory: Path, code: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_worker_killed_outright_stops_counting_in_live_gauges(tmp_path: Path) -> None:
    # A worker that dies mid-import without a word (as SIGKILL leaves it).
    run(tmp_path, "from app.metrics import Metrics; Metrics().imports_running.set(1)")
    scraped = run(tmp_path, "from app.metrics import Metrics; print(Metrics().render().decode())")
    assert "jewelry_csv_imports_running 0.0" in scraped
    # Counters of the dead worker stay: totals never go back.
    run(tmp_path, "from app.metrics import Metrics; Metrics().predictions.inc(3)")
    scraped = run(tmp_path, "from app.metrics import Metrics; print(Metrics().render().decode())")
    assert "jewelry_predictions_total 3.0" in scraped
