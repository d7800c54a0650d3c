"""Importing the service does nothing but define it; its data goes where it is started."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import logging, sys
before = list(logging.getLogger().handlers)
import app.main
assert logging.getLogger().handlers == before, "importing app.main configured logging"
assert "app" not in vars(app.main), "importing app.main built the app"
from app.config import Settings
print(Settings().DATA_DIR)
"""


def test_importing_the_app_touches_nothing_and_data_goes_where_it_is_started(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEWELRY_")}
    env["PYTHONPATH"] = str(ROOT)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []  # no data directory, no database
