"""The README's API tour, run as written against a server loaded the way `make run` loads it.

Each `curl` in the tour is followed by the answer it announces (`# -> 201 ...`); the tour runs
in one bash process, line after line, with a `curl` that records each status, and the test
fails on any status the README does not announce, or on a step that fails.
"""

import re
import subprocess
from pathlib import Path

from tests.servers import CLI, Server

README = Path(__file__).resolve().parents[2] / "README.md"
BASE_LINE = "BASE=http://127.0.0.1:8000"

# Runs before the tour: a curl that passes everything through and notes each status.
RECORDING_CURL = r"""
curl() {
    local out
    out=$(command curl -sS --max-time 60 -w '\n%{http_code}' "$@") || return $?
    echo "${out##*$'\n'}" >> "$TOUR_STATUSES"
    printf '%s\n' "${out%$'\n'*}" | tee -a "$TOUR_BODIES"
}
"""


def tour() -> tuple[str, list[int]]:
    """The tour's shell block and the status each of its curl commands announces."""
    text = README.read_text()
    section = text[text.index("## API tour") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the API tour has no ```sh block"
    script = block.group(1)
    assert BASE_LINE in script
    lines = script.replace("\\\n", " ").splitlines()
    announced: list[int] = []
    waiting = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            found = re.match(r"# -> (\d{3})\b", stripped)
            if found and waiting is not None:
                announced.append(int(found.group(1)))
                waiting = None
            continue
        if re.search(r"(^|[|;(]\s*|\$\()curl\s", stripped):
            assert waiting is None, f"no answer announced for: {waiting}"
            waiting = stripped
    assert waiting is None, f"no answer announced for: {waiting}"
    return script, announced


def test_every_curl_in_the_tour_announces_its_answer() -> None:
    script, announced = tour()
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert len(announced) == len(re.findall(r"\bcurl\s", "\n".join(commands))) >= 30


def test_the_readme_tour_runs_as_written(database_url: str, tmp_path: Path) -> None:
    script, announced = tour()
    data = tmp_path / "data"
    data.mkdir()
    server = Server(database_url, data, admin_key=None)
    # `make run`: demo data first, then the server.
    loaded = subprocess.run(
        [CLI, "demo"], env=server.env, capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    statuses, bodies = tmp_path / "statuses", tmp_path / "bodies"
    try:
        server.start()
        program = RECORDING_CURL + script.replace(BASE_LINE, f"BASE={server.base_url}")
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", program],
            cwd=tmp_path,
            env={**server.env, "TOUR_STATUSES": str(statuses), "TOUR_BODIES": str(bodies)},
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.close()
    got = [int(s) for s in statuses.read_text().split()] if statuses.exists() else []
    log = bodies.read_text() if bodies.exists() else ""
    assert ran.returncode == 0, (
        f"the tour stopped after {len(got)} requests:\n{ran.stderr}\n{log[-3000:]}"
    )
    assert got == announced, f"{log[-3000:]}"
