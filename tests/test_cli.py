"""`jewelry-forecast demo`, `migrate`, `rotate-admin-key` and `serve` on a fresh data folder."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.cli import main
from app.config import Settings
from app.db import Database
from app.orm import ModelVersion, Sale, Store
from app.services import registry
from tests.helpers import ADMIN_KEY
from tests.servers import LOOPBACK, free_port, running_server

CLI = str(Path(sys.executable).parent / "jewelry-forecast")


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEWELRY_")}
    env["JEWELRY_DATA_DIR"] = str(data_dir)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_demo_loads_three_stores_trains_and_saves_the_admin_key(tmp_path: Path) -> None:
    first = run(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    assert "http://127.0.0.1:8000/docs" in first.stdout
    key_file = tmp_path / "admin-key"
    assert str(key_file) in first.stdout
    assert key_file.stat().st_mode & 0o077 == 0
    key = key_file.read_text().strip()
    assert re.fullmatch(r"jf_admin_[A-Za-z0-9_-]{43}", key)
    assert key not in first.stdout + first.stderr

    db = Database(Settings(DATA_DIR=tmp_path))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Store)) == 3
        assert session.scalar(select(func.count()).select_from(Sale)) == 300
        carats = session.execute(select(func.min(Sale.carats), func.max(Sale.carats))).one()
        assert carats[0] >= 0.5 and carats[1] <= 25
        model = session.get(ModelVersion, registry.active_version(session))
        assert model is not None
        # The demo's truth: silver about $30, gold $40-60 (mean 50) per carat.
        assert abs(model.silver_price - 30) < 4 * model.metrics["silver_std_error"]
        assert abs(model.gold_price_per_carat - 50) < 4 * model.metrics["gold_std_error"]
    db.dispose()

    again = run(tmp_path, "demo")
    assert again.returncode == 0
    assert "already has stores" in again.stdout
    assert key_file.read_text().strip() == key

    rotated = run(tmp_path, "rotate-admin-key")
    assert rotated.returncode == 0
    assert key_file.read_text().strip() != key


def test_migrate_down_and_up(tmp_path: Path) -> None:
    up = run(tmp_path, "migrate")
    assert up.returncode == 0, up.stderr
    down = run(tmp_path, "migrate", "--downgrade", "base")
    assert "schema at None" in down.stdout
    assert re.search(r"schema at [0-9a-f]{12}", run(tmp_path, "migrate").stdout)


def test_the_demo_banner_and_serve_take_host_and_port_from_the_environment(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEWELRY_")}
    env |= {"JEWELRY_DATA_DIR": str(tmp_path), "JEWELRY_HOST": LOOPBACK, "JEWELRY_PORT": "8123"}
    banner = subprocess.run([CLI, "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert f"http://{LOOPBACK}:8123/docs" in banner.stdout

    # A port found free may be taken before the server binds it: then try another.
    for _ in range(3):
        env["JEWELRY_PORT"] = str(port := free_port())
        server = subprocess.Popen([CLI, "serve"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            live = answers_live(port, server)
            if live:
                server.send_signal(signal.SIGTERM)
            _, log = server.communicate(timeout=30)
        finally:
            server.kill()
        if live or "address already in use" not in log.lower():
            break
    assert live, log[-2000:]
    # A stop that was asked for is a success (uvicorn alone would exit with -SIGTERM).
    assert server.returncode == 0, log[-2000:]


def answers_live(port: int, server: subprocess.Popen[str], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://{LOOPBACK}:{port}/health/live").status_code == 200:
                return True
        time.sleep(0.1)
    return False


def test_serve_removes_the_metrics_a_killed_serve_left_behind(tmp_path: Path) -> None:
    gone = tmp_path / "jewelry-metrics-999999999-abc"  # no process has this pid
    gone.mkdir()
    mine = tmp_path / f"jewelry-metrics-{os.getpid()}-abc"  # this test's pid: still running
    mine.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEWELRY_")}
    env.update(JEWELRY_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(tmp_path))
    serve = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://{LOOPBACK}:{port}/health/live").status_code == 200:
                    break
            time.sleep(0.1)
        assert not gone.exists()
        assert mine.exists()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)


class CannedServer:
    """A listener that answers each of ``connections`` requests with the same bytes, verbatim,
    and keeps the request heads it got. With ``hold``, each connection stays open after the
    answer until the event is set: an export that stalls half-way."""

    def __init__(
        self, answer: bytes, *, connections: int = 1, hold: threading.Event | None = None
    ) -> None:
        self.listener = socket.create_server((LOOPBACK, 0))
        self.url = f"http://{LOOPBACK}:{self.listener.getsockname()[1]}"
        self.heads: list[str] = []
        self.thread = threading.Thread(
            target=self._serve, args=(answer, connections, hold), daemon=True
        )
        self.thread.start()

    def _serve(self, answer: bytes, connections: int, hold: threading.Event | None) -> None:
        with self.listener:
            for _ in range(connections):
                connection, _ = self.listener.accept()
                with connection:
                    head = b""
                    while b"\r\n\r\n" not in head and (data := connection.recv(65536)):
                        head += data
                    self.heads.append(head.decode("latin-1").lower())
                    connection.sendall(answer)
                    if hold is not None:
                        hold.wait(60)

    def join(self) -> None:
        self.thread.join(timeout=10)


def chunked_csv_answer(rows: int) -> bytes:
    """The head of a chunked CSV export and one chunk of ``rows`` sales, without the end."""
    body = b"carats,price,sold_at,store_id\n" + b"1.0,10.00,2026-01-01T00:00:00Z,1\n" * rows
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n"
    )


def test_an_export_cut_short_leaves_the_old_file_and_says_so(tmp_path: Path) -> None:
    target = tmp_path / "sales.csv"
    target.write_text("an earlier, complete export\n")
    server = CannedServer(chunked_csv_answer(3))  # then the connection drops
    cut = run(tmp_path, "export", str(target), "--url", server.url, "--key", "k" * 20)
    server.join()
    assert cut.returncode == 1
    assert "the download was cut after 3 sales" in cut.stderr
    assert target.read_text() == "an earlier, complete export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sales.csv"]


def test_the_client_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEWELRY_")}
    for args in (
        ["quote", "nan"],
        ["quote", "1e400"],
        ["quote", "1_0"],
        ["train", "--learning-rate", "banana"],
    ):
        refused = subprocess.run([CLI, *args], env=env, capture_output=True, text=True)
        assert refused.returncode == 2, args
        assert "Traceback" not in refused.stderr and "invalid" in refused.stderr
    for args in (
        ["import", str(tmp_path / "missing.csv"), "--key", "k" * 20],
        ["prices", "--url", "http://[::1"],
    ):
        refused = subprocess.run([CLI, *args], env=env, capture_output=True, text=True)
        assert refused.returncode in (1, 2), args
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def one_line(stderr: str) -> str:
    """The last line a command printed on stderr (a progress bar redraws with carriage
    returns), after checking it printed no traceback."""
    assert "Traceback" not in stderr, stderr
    return stderr.replace("\r", "\n").strip().splitlines()[-1]


def test_the_saved_admin_key_goes_only_with_the_commands_that_need_one(tmp_path: Path) -> None:
    (tmp_path / "admin-key").write_text("jf_admin_saved-by-the-demo\n")
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!"
    server = CannedServer(answer, connections=5)
    for command in (["quote", "2"], ["prices"], ["models"]):
        public = run(tmp_path, *command, "--url", server.url)
        # Nor does an answer that is not the service's end in a traceback.
        assert public.returncode == 1
        assert one_line(public.stderr) == (
            f"the service at {server.url} answered something this client does not understand"
        )
    given = run(tmp_path, "prices", "--url", server.url, "--key", "jf_store_given")
    admin = run(tmp_path, "train", "--url", server.url)
    server.join()
    assert (given.returncode, admin.returncode) == (1, 1)
    assert ["x-api-key" in head for head in server.heads] == [False, False, False, True, True]
    assert "x-api-key: jf_store_given\r\n" in server.heads[3]
    assert "x-api-key: jf_admin_saved-by-the-demo\r\n" in server.heads[4]


def test_private_reads_a_wrong_url_and_odd_answers_say_what_to_do(
    sqlite_url: str, tmp_path: Path
) -> None:
    cli_data = tmp_path / "cli"
    cli_data.mkdir()
    (cli_data / "admin-key").write_text(ADMIN_KEY)
    env = {"JEWELRY_PUBLIC_READS": "false"}
    with running_server(sqlite_url, tmp_path, env=env) as server:
        private = run(cli_data, "models", "--url", server.base_url)
        keyed = run(cli_data, "models", "--url", server.base_url, "--key", ADMIN_KEY)
        wrong = run(cli_data, "prices", "--url", f"{server.base_url}/api/v1")
    assert private.returncode == 1
    assert one_line(private.stderr) == (
        "401: missing X-API-Key header: this service answers only with a key: "
        "pass --key or set JEWELRY_API_KEY"
    )
    assert keyed.returncode == 0, keyed.stderr
    assert keyed.stdout.strip() == "no versions yet: train one"
    assert wrong.returncode == 1
    assert one_line(wrong.stderr) == (
        f"the service at {server.base_url}/api/v1 has no /api/v1/api/v1/prices: "
        f"give its base URL, e.g. http://127.0.0.1:8000"
    )

    unexpected = b'{"unexpected": true}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    odd = CannedServer(answer % (len(unexpected), unexpected))
    prices = run(cli_data, "prices", "--url", odd.url, "--json")
    odd.join()
    assert prices.returncode == 1
    assert prices.stdout == ""
    assert one_line(prices.stderr) == (
        f"the service at {odd.url} answered something this client does not understand"
    )


def run_here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | str | None, str]:
    """The command line's status and stderr, run in this process: for what it refuses
    without asking a service, which a new process would take seconds to import for."""
    try:
        status: int | str | None = main(list(args))
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err


def test_what_is_not_a_service_url_or_a_version_is_refused_before_asking(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for url in ("not a url", "ftp://x", "http://[::1"):
        status, stderr = run_here(capsys, "prices", "--url", url)
        assert status == 2, url
        assert one_line(stderr).startswith(f"not a service URL: {url} ("), url
    for version in ("-5", "0", "1.5"):
        status, stderr = run_here(capsys, "activate", version, "--key", "k" * 20)
        assert status == 2, version
        assert one_line(stderr).endswith(f"invalid version value: '{version}'")


def test_export_refuses_a_target_it_would_not_write_as_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outdir").mkdir()
    kept = tmp_path / "kept.csv"
    kept.write_text("an earlier export\n")
    (tmp_path / "link.csv").symlink_to(kept)
    reasons = {
        "": "give the file to write the sales to",
        str(tmp_path / "outdir"): "is a directory",
        str(tmp_path / "new") + "/": "is a directory",
        str(tmp_path / "missing" / "sales.csv"): "no directory",
        str(tmp_path / "link.csv"): "is a symbolic link",
        "/dev/null": "is not a regular file",
    }
    nobody = f"http://{LOOPBACK}:{free_port()}"  # asking it would fail with status 1
    for target, reason in reasons.items():
        status, stderr = run_here(capsys, "export", target, "--url", nobody, "--key", "k" * 20)
        assert status == 2, (target, stderr)
        assert reason in one_line(stderr), target
    assert (tmp_path / "link.csv").is_symlink()
    assert kept.read_text() == "an earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.csv", "link.csv", "outdir"]
    assert list((tmp_path / "outdir").iterdir()) == []


def test_an_export_replaces_a_file_with_one_only_its_owner_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "sales.csv"
    target.write_text("an earlier export\n")
    target.chmod(0o644)
    server = CannedServer(chunked_csv_answer(2) + b"0\r\n\r\n")
    status, stderr = run_here(capsys, "export", str(target), "--url", server.url, "--key", "k" * 20)
    server.join()
    assert status == 0, stderr
    assert target.read_text().splitlines()[1:] == ["1.0,10.00,2026-01-01T00:00:00Z,1"] * 2
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["sales.csv"]


@pytest.mark.parametrize(
    ("stop", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
)
def test_a_stopped_export_removes_its_partial_file(
    tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    hold = threading.Event()
    server = CannedServer(chunked_csv_answer(1000), hold=hold)  # and then nothing
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEWELRY_")}
    export = subprocess.Popen(
        [CLI, "export", str(out / "sales.csv"), "--url", server.url, "--key", "k" * 20],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a shell without job control starts background commands with
        # SIGINT ignored, and the client leaves an ignored signal ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in out.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [p.name for p in out.iterdir() if p.name.endswith(".partial")]
        export.send_signal(stop)
        _, stderr = export.communicate(timeout=30)
    finally:
        export.kill()
        hold.set()
        server.join()
    assert export.returncode == status
    assert one_line(stderr) == f"jewelry-forecast: stopped by {stop.name}"
    assert list(out.iterdir()) == []
