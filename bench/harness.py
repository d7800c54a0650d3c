"""What every benchmark uses: servers in their own processes, wrk and its output, the resident
memory of a server's workers, py-spy profiles, and best-of timing.

The benchmarks talk to the service over HTTP only, so they measure whatever the code on the
branch does without knowing how it does it.
"""

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
# wrk's own threads: one per core of this 2-core machine.
WRK_THREADS = 2


@dataclass
class Run:
    """What one run of the bench shares: its options, its scratch directory, the commands it
    ran (for RESULTS.md)."""

    workdir: Path
    quick: bool
    postgres_url: str | None
    profile: bool
    commands: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> int:
        """How long each wrk measurement lasts."""
        return 3 if self.quick else 6

    @property
    def rounds(self) -> int:
        """Measurements of each side, alternating service and reference; the best one counts
        (the least disturbed by the other sessions sharing the machine)."""
        return 1 if self.quick else 2

    def note(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Keep a command for RESULTS.md, with what changes from run to run (ports, process
        ids, keys, the scratch directory) named rather than shown."""
        line = " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), *argv])
        for pattern, name in (
            (r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:$PORT"),
            (r"--port \d+", "--port $PORT"),
            (r"--pid \d+", "--pid $PID"),
            (r"profile-\d+", "profile-N"),
            (r"jf_store_\S+", "$STORE_KEY"),
            (r"idempotent \S+", "idempotent $UNIQUE_WORD"),
        ):
            line = re.sub(pattern, name, line)
        line = line.replace(str(self.workdir), "$WORK").replace(str(ROOT) + "/", "")
        if line not in self.commands:
            self.commands.append(line)


def say(line: str) -> None:
    """Progress, as the bench goes."""
    print(line, flush=True)


# Servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def workers_text(workers: int) -> str:
    return "1 worker" if workers == 1 else f"{workers} workers"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    workers: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """The processes that run the app: uvicorn runs it in its own process with one
        worker, in spawned children with more (beside multiprocessing's resource tracker)."""
        if self.workers == 1:
            return [self.process.pid]
        return [p for p in children(self.process.pid) if "spawn_main" in cmdline(p)]


def _wait_ready(server: Server, path: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            ready = httpx.get(server.url + path, timeout=2).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and len(server.worker_pids()) == server.workers:
            # Every worker answers before the measurement starts, not only the first up.
            for _ in range(8 * server.workers):
                httpx.get(server.url + path, timeout=5).raise_for_status()
            return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after 120 s; see {log}")


@contextmanager
def serve(
    run: Run,
    name: str,
    argv: list[str],
    *,
    workers: int,
    port: int,
    env: dict[str, str],
    ready_path: str,
) -> Iterator[Server]:
    log = run.workdir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    run.note(argv, env)
    server = Server(name, process, port, workers)
    try:
        _wait_ready(server, ready_path, log)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {"JEWELRY_DATA_DIR": str(data_dir), "JEWELRY_ADMIN_API_KEY": ADMIN_KEY}
    if database_url is not None:
        env["JEWELRY_DATABASE_URL"] = database_url
    return env


@contextmanager
def service(
    run: Run, data_dir: Path, *, workers: int, database_url: str | None = None
) -> Iterator[Server]:
    """``jewelry-forecast serve`` as a user starts it, on SQLite in ``data_dir`` unless a
    database URL is given."""
    port = free_port()
    argv = [str(VENV_BIN / "jewelry-forecast"), "serve", "--port", str(port)]
    argv += ["--workers", str(workers)]
    with serve(
        run,
        f"service-{workers}w",
        argv,
        workers=workers,
        port=port,
        env=service_env(data_dir, database_url),
        ready_path="/health/ready",
    ) as server:
        yield server


@contextmanager
def reference(run: Run, *, workers: int, env: dict[str, str] | None = None) -> Iterator[Server]:
    """bench/reference_app.py served by ``uvicorn module:app --workers N`` on uvloop and
    httptools (named, so that it cannot fall back), without uvicorn's access log: the least a
    server does, which roughly halves a bare quote's cost on this machine."""
    port = free_port()
    argv = [str(VENV_BIN / "python"), "-m", "uvicorn", "bench.reference_app:app"]
    argv += ["--port", str(port), "--workers", str(workers), "--loop", "uvloop"]
    argv += ["--http", "httptools", "--no-access-log"]
    with serve(
        run,
        f"reference-{workers}w",
        argv,
        workers=workers,
        port=port,
        env=env or {},
        ready_path="/health",
    ) as server:
        yield server


def jewelry_forecast(run: Run, *args: str, env: dict[str, str]) -> None:
    """Run one ``jewelry-forecast`` command (migrate, demo) to completion."""
    argv = [str(VENV_BIN / "jewelry-forecast"), *args]
    run.note(argv, env)
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr.decode()[-2000:]}")


# Load


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    latency_mean: float  # seconds
    latency_p50: float
    latency_p99: float
    requests: int
    failures: int  # responses other than 2xx/3xx, plus socket errors

    def describe_failures(self) -> str:
        return f"{self.failures} of {self.requests} failed" if self.failures else ""


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    """wrk's report (with --latency) as numbers."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {pattern!r} in wrk's output:\n{output}")
        return match

    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failures = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    failures += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(
        requests_per_second=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        latency_mean=_seconds(find(r"^\s+Latency\s+(\S+)").group(1)),
        latency_p50=_seconds(find(r"^\s+50%\s+(\S+)").group(1)),
        latency_p99=_seconds(find(r"^\s+99%\s+(\S+)").group(1)),
        requests=int(find(r"^\s+(\d+) requests in").group(1)),
        failures=failures,
    )


def wrk(
    run: Run,
    url: str,
    *,
    connections: int,
    seconds: float,
    script: str | None = None,
    script_args: Sequence[str] = (),
) -> WrkResult:
    """Load ``url`` with wrk; POSTs go through a Lua script in bench/."""
    threads = min(WRK_THREADS, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    argv += ["--timeout", "30s"]
    if script is not None:
        argv += ["-s", str(BENCH_DIR / script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    run.note(argv)
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def ensure_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")


# Memory


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


class PeakRss:
    """The highest resident set size of the given processes (summed) while the block runs,
    sampled every 5 ms from /proc."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.before = self._total()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _total(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._total())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


# Time


def best_time(func: Callable[[], object], repeats: int) -> float:
    """The smallest wall time of ``repeats`` calls: the one least disturbed by the machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def best_mean_time(func: Callable[[], object], seconds: float, rounds: int) -> float:
    """The smallest of ``rounds`` mean wall times of ``func`` called back to back for
    ``seconds``: how wrk measures a service with one connection, so that both sides of a
    ratio pay alike for what comes only now and then (a checkpoint, a page split)."""
    best = float("inf")
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            func()
            calls += 1
        best = min(best, elapsed / calls)
    return best


# Profiles


@dataclass(frozen=True)
class Profile:
    """Where a server's workers spent their samples during one load: the functions that were
    running (self) and the project's own functions with everything they called (inclusive)."""

    path: str
    samples: int
    self_top: list[tuple[str, int]]
    project_top: list[tuple[str, int]]


def _frame_name(frame: str) -> str:
    """``func (path:line)`` -> ``func (short path)``: one name per function, whatever line."""
    match = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame)
    if match is None:
        return frame
    func, path = match.groups()
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = path.split("/", 1)[1]
            break
    return f"{func} ({path})"


def _is_project(name: str) -> bool:
    # app/cli.py only starts uvicorn: with one worker it is the outermost frame of everything.
    return ("(app/" in name or "(models/" in name) and "(app/cli.py)" not in name


def summarise(path: str, raw: str, top: int = 8) -> Profile:
    """Summarise py-spy's raw output (``frame;frame;...;leaf count`` a line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # With --subprocesses, py-spy puts each process at the bottom of its stacks.
        frames = [_frame_name(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            if _is_project(name):
                inclusive[name] += n
    return Profile(path, total, own.most_common(top), inclusive.most_common(top))


def profile(
    run: Run, server: Server, path: str, seconds: float, load: Callable[[], object]
) -> Profile:
    """py-spy on the server's workers for ``seconds`` while ``load`` runs against them. py-spy
    reads the workers' memory without stopping them (--nonblocking), so it disturbs them
    little; samples where a thread waits are left out (py-spy's default)."""
    out = run.workdir / f"profile-{len(list(run.workdir.glob('profile-*')))}.txt"
    argv = [str(VENV_BIN / "py-spy"), "record", "--pid", str(server.process.pid)]
    argv += ["--subprocesses", "--nonblocking", "--rate", "200", "--format", "raw"]
    argv += ["--duration", str(math.ceil(seconds)), "--output", str(out)]
    run.note(argv)
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attaching
    load()
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {err.decode()[-1000:]}")
    return summarise(path, out.read_text())


def side_by_side(
    run: Run,
    service: Callable[[float], WrkResult],
    reference: Callable[[float], WrkResult],
    *,
    better: Callable[[WrkResult], float],
) -> tuple[WrkResult, WrkResult]:
    """Warm both sides for a second, then alternate ``run.rounds`` measurements of each; the
    best of each side by ``better`` (larger is better), a run with failures never chosen
    over one without (a 4xx is quick)."""
    service(1)
    reference(1)
    ours, theirs = [], []
    for _ in range(run.rounds):
        ours.append(service(run.seconds))
        theirs.append(reference(run.seconds))

    def rank(result: WrkResult) -> tuple[bool, float]:
        return result.failures == 0, better(result)

    return max(ours, key=rank), max(theirs, key=rank)
