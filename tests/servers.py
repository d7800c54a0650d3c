"""A real `jewelry-forecast serve` process for end-to-end and robustness tests.

`Server` starts the command line on a free loopback port in its own process group (so that
`kill()` takes down uvicorn's supervisor and all its workers at once, as a crash would), waits
until /health/ready answers 200, stops it with SIGTERM, and restarts it on the same port and
database. Everything the processes print goes to one log file that survives restarts.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from tests.helpers import ADMIN_KEY

CLI = str(Path(sys.executable).parent / "jewelry-forecast")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class ServerError(AssertionError):
    """The server did not start, or did not stop, as it should have."""


class Server:
    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        *,
        workers: int = 1,
        graceful_timeout: int = 5,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        wrapper: Sequence[str] = (),
        admin_key: str | None = ADMIN_KEY,
    ) -> None:
        self.database_url = database_url
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.graceful_timeout = graceful_timeout
        self.port = port or free_port()
        # A port picked here may be taken by another process before the server binds it.
        self._port_is_ours = port is None
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = self.data_dir / f"server-{self.port}.log"
        # e.g. ("setpriv", "--reuid=65534", ...) to run the server as another user.
        self.wrapper = list(wrapper)
        self.env = {
            **os.environ,
            "JEWELRY_DATABASE_URL": database_url,
            "JEWELRY_DATA_DIR": str(self.data_dir),
            **({"JEWELRY_ADMIN_API_KEY": admin_key} if admin_key is not None else {}),
            # The server's temporary files (its metrics directory) stay with the test's, and
            # go with them even when a test kills the server before it can clean up.
            "TMPDIR": str(self.data_dir),
            **(env or {}),
        }
        if admin_key is None:
            # As a user runs it: the key is generated at first start and kept in DATA_DIR.
            self.env.pop("JEWELRY_ADMIN_API_KEY", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # Lifecycle

    def start(self, *, ready_timeout: float = 60.0) -> "Server":
        if self.running:
            raise ServerError("the server is already running")
        for _ in range(3):
            try:
                return self._start(ready_timeout)
            except ServerError:
                if not (self._port_is_ours and self.starts == 1 and self._lost_port()):
                    raise
            self.starts = 0
            self.port = free_port()
            self.base_url = f"http://{LOOPBACK}:{self.port}"
        raise ServerError(f"no free port after three tries:\n{self.log_tail()}")

    def _lost_port(self) -> bool:
        self._reap_group()
        return "address already in use" in self.log_tail(5).lower()

    def _start(self, ready_timeout: float) -> "Server":
        command = [
            *self.wrapper,
            CLI,
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--graceful-timeout",
            str(self.graceful_timeout),
        ]
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: see kill()
            )
        self.starts += 1
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process is None or self.process.poll() is not None:
                raise ServerError(f"the server exited before it was ready:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerError(f"the server was not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self) -> None:
        """Send SIGTERM to the server (uvicorn's supervisor passes it to its workers)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for the server to exit and return its status; ServerError if it did not."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServerError(f"the server still runs after {timeout} s") from None

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then wait; kills the group if it outlives the graceful timeout by far."""
        if not self.running:
            return self.process.returncode if self.process else 0
        self.terminate()
        try:
            return self.wait(timeout if timeout is not None else self.graceful_timeout + 15)
        finally:
            self._reap_group()

    def kill(self) -> None:
        """SIGKILL the whole process group: supervisor and workers die at the same instant."""
        assert self.process is not None
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._wait_group_gone()

    def restart(self, *, ready_timeout: float = 60.0) -> "Server":
        """Start again on the same port and database (after stop() or kill())."""
        if self.running:
            self.stop()
        return self.start(ready_timeout=ready_timeout)

    def close(self) -> None:
        """Leave nothing running, whatever state the test left the server in."""
        if self.process is None:
            return
        if self.running:
            with suppress(ServerError):
                self.stop(timeout=self.graceful_timeout + 5)
        self._reap_group()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def _group_alive(self) -> bool:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a member runs as another user but still exists
            return True
        return True

    def _wait_group_gone(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _reap_group(self) -> None:
        """Kill any worker left behind by a supervisor that exited (or was killed) alone."""
        if self.process is not None and self._group_alive():
            self._signal_group(signal.SIGKILL)
            self._wait_group_gone()

    # Introspection

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def client(self, **kwargs: object) -> httpx.Client:
        kwargs.setdefault("timeout", 60.0)
        return httpx.Client(base_url=self.base_url, **kwargs)  # type: ignore[arg-type]


@contextmanager
def running_server(database_url: str, data_dir: Path, **kwargs: object) -> Iterator[Server]:
    """A started server that is stopped (or killed) when the block ends."""
    server = Server(database_url, data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.close()
