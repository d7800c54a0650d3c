"""`make container-check`: build the image and run it, where no Docker engine or registry is.

Debian's packages stand in for both. debootstrap makes a minimal bookworm root with Python
3.11, imported once as the `python:3.11-slim` base into a container store of our own (under
$JEWELRY_CONTAINER_CACHE, default /var/cache/jewelry-container). buildah builds the Dockerfile
as it is; podman runs the image with runc on the host's network, the server listening on
loopback only. It checks, with real HTTP requests, what issue 12 asks of the image: the build,
liveness and the healthcheck, a non-root process and read-only code, demo data and a
prediction, the admin key written into the volume, the database and the key surviving a new
container on the same volume, a one-line error for a /data the user cannot write, exit status
0 within the grace period on SIGTERM; and it reports the image's size and what makes it up.

Exit status 0 when every check passed, and also when this machine refuses the namespaces that
containers need (it says so in one line); 1 when a check failed. Run as root (it installs the
tools with apt-get when they are missing). Every wait is bounded.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("JEWELRY_CONTAINER_CACHE", "/var/cache/jewelry-container"))
IMAGE = "localhost/jewelry-forecast:check"
# The name `FROM python:3.11-slim` resolves to in a store with no registry behind it.
BASE = "docker.io/library/python:3.11-slim"
SUITE = "bookworm"  # python:3.11-slim's Debian release, whose python3 is 3.11
BASE_PACKAGES = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
# Debian packages, each named as its command.
TOOLS = ("debootstrap", "buildah", "podman", "runc")
SERVICE_UID = 10001
# What `docker stop` and `podman stop` wait for before they send SIGKILL.
GRACE_SECONDS = 10
LOOPBACK = "127.0.0.1"
# What podman says when the machine refuses it a namespace or a mount (and nothing else does).
DENIED = re.compile(r"operation not permitted|permission denied", re.I)
NAMESPACES = re.compile(r"namespace|unshare|clone|newuidmap|pivot_root|mount", re.I)
# Limits of the service's size: podman's defaults raise nofile and nproc, which needs
# CAP_SYS_RESOURCE, and a sandbox may withhold it (this one does).
ULIMITS = {"nofile": (resource.RLIMIT_NOFILE, 4096), "nproc": (resource.RLIMIT_NPROC, 1024)}


class CheckFailed(Exception):
    """A check did not hold: the image or the tooling is broken."""


class NamespacesRefused(Exception):
    """This machine does not let containers run: not a failure of the image."""


def main() -> int:
    started = time.monotonic()
    try:
        if os.geteuid() != 0:
            raise CheckFailed("run as root: it installs packages and runs rootful containers")
        probe_namespaces()
        install_tools()
        env = container_env()
        timings: dict[str, float] = {}
        with timed(timings, "stand-in base image"):
            base_was_cached = ensure_base_image(env)
        probe_containers(env)
        with timed(timings, "image build"):
            build_image(env)
        report_ok("the image builds from the Dockerfile as it is (buildah)")
        with timed(timings, "run checks"):
            run_checks(env)
        report_sizes(env)
    except NamespacesRefused as refused:
        print(f"container check not run: this machine refuses container namespaces ({refused})")
        return 0
    except CheckFailed as failed:
        print(f"container check FAILED: {failed}", file=sys.stderr)
        return 1
    total = time.monotonic() - started
    spent = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    cached = "cached" if base_was_cached else "built now"
    print(f"container check passed in {total:.0f} s ({spent}; base image {cached})")
    return 0


# Commands


def run(
    command: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(command),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{' '.join(command)} took more than {timeout:.0f} s") from None
    if check and result.returncode != 0:
        raise CheckFailed(f"{' '.join(command)} exited {result.returncode}:\n{tail(result)}")
    return result


def tail(result: subprocess.CompletedProcess[str], lines: int = 30) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    timings[name] = time.monotonic() - start


def report_ok(what: str) -> None:
    print(f"ok   {what}", flush=True)


def expect(condition: bool, what: str, detail: str = "") -> None:
    if not condition:
        raise CheckFailed(f"{what}{': ' + detail if detail else ''}")
    report_ok(what)


# The machine and its tools


def probe_namespaces() -> None:
    """The namespaces runc and buildah's chroot isolation make, tried with nothing else."""
    probe = ["unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "true"]
    result = run(probe, timeout=30, check=False)
    if result.returncode != 0:
        raise NamespacesRefused(tail(result, 1) or f"unshare exited {result.returncode}")


def install_tools() -> None:
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if not missing:
        return
    print(f"installing {', '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env, timeout=900)


def container_env() -> dict[str, str]:
    """buildah's and podman's environment: a container store of our own in the cache, so
    that the stand-in base never shadows a real python:3.11-slim in the machine's store."""
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{CACHE / "storage"}"\n'
        'runroot = "/run/jewelry-container-check"\n'
    )
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}


def podman(*args: str) -> list[str]:
    # No systemd or journald here: cgroups and events are plain files.
    return ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses: the only one its network may reach."""
    sources = Path("/etc/apt")
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            # deb822 (.sources) stanzas, then one-line entries.
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
            line = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", stanza, re.M)
            if line:
                return line.group(1)
    raise CheckFailed(f"no Debian {SUITE} mirror in /etc/apt/sources.list*")


def ensure_base_image(env: dict[str, str]) -> bool:
    """The stand-in base, made once; True when it was already there."""
    exists = run(podman("image", "exists", BASE), env=env, timeout=60, check=False)
    if exists.returncode == 0:
        return True
    mirror = debian_mirror()
    print(f"making the stand-in {BASE} with debootstrap from {mirror} (once)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="base-", dir=CACHE))
    try:
        rootfs = work / "rootfs"
        debootstrap = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}"]
        run([*debootstrap, SUITE, str(rootfs), mirror], timeout=1200)
        # python:3.11-slim's Python is not Debian's: pip installs into it without complaint.
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink()
        # The host's bundle, so that the build's downloads pass this machine's TLS proxy.
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/")
        # What a slim image leaves out: package lists and caches, documentation, locales.
        for leftover in (
            "var/cache/apt",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "usr/share/locale",
        ):
            shutil.rmtree(rootfs / leftover, ignore_errors=True)
        archive = work / "rootfs.tar"
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."], timeout=300)
        changes = [
            "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            # uv reads this, not the system store, to trust that proxy.
            "ENV=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            'CMD=["python3"]',
        ]
        flags = [arg for change in changes for arg in ("--change", change)]
        run(podman("import", *flags, str(archive), BASE), env=env, timeout=300)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return False


def probe_containers(env: dict[str, str]) -> None:
    """A container that only runs `true`: if podman is refused here, the machine is at fault."""
    result = run(
        podman_run("--rm", "--network", "none", BASE, "true"), env=env, timeout=120, check=False
    )
    if result.returncode != 0:
        if DENIED.search(result.stderr) and NAMESPACES.search(result.stderr):
            raise NamespacesRefused(tail(result, 1))
        raise CheckFailed(f"podman cannot run a container:\n{tail(result)}")


def podman_run(*args: str) -> list[str]:
    return podman("--runtime", "runc", "run", *ulimits(), *args)


def ulimits() -> list[str]:
    flags = []
    for name, (limit, wanted) in ULIMITS.items():
        hard = resource.getrlimit(limit)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        flags.append(f"--ulimit={name}={value}:{value}")
    return flags


def build_image(env: dict[str, str]) -> None:
    build = ["buildah", "bud", "--isolation=chroot", "--pull-never", "--format=docker", "--layers"]
    dockerfile = ["--file", str(ROOT / "Dockerfile"), str(ROOT)]
    # The build stage gets a name of its own, so that the prune below keeps it as the layer
    # cache of the next run (the dependencies' layer takes most of a cold build).
    run([*build, "--target=build", f"--tag={IMAGE}-build", *dockerfile], env=env, timeout=1200)
    run([*build, f"--tag={IMAGE}", *dockerfile], env=env, timeout=1200)
    # Earlier builds' images, now untagged.
    run(podman("image", "prune", "--force"), env=env, timeout=300)


# The checks


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def http(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


class Container:
    """One run of the image on the host's network, its server on loopback:PORT only."""

    def __init__(self, env: dict[str, str], name: str, volume: str, port: int) -> None:
        self.env, self.name, self.volume, self.port = env, name, volume, port

    def start(self) -> "Container":
        listen = [f"--env=JEWELRY_HOST={LOOPBACK}", f"--env=JEWELRY_PORT={self.port}"]
        volume = f"--volume={self.volume}:/data"
        start = podman_run(
            "--detach", f"--name={self.name}", "--network=host", volume, *listen, IMAGE
        )
        run(start, env=self.env, timeout=120)
        return self

    def podman(self, *args: str) -> str:
        return run(podman(*args), env=self.env, timeout=60).stdout.strip()

    def inspect(self, template: str) -> str:
        return self.podman("inspect", "--format", template, self.name)

    def logs(self) -> str:
        return tail(run(podman("logs", self.name), env=self.env, timeout=60, check=False))

    def exec(self, *command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run(podman("exec", self.name, *command), env=self.env, timeout=timeout)

    def wait_live(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.inspect("{{.State.Running}}") != "true":
                raise CheckFailed(f"{self.name} exited before it answered:\n{self.logs()}")
            try:
                if http(self.port, "/health/live")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise CheckFailed(f"{self.name}: no answer on /health/live after {timeout} s")

    def sigterm(self) -> tuple[int, float]:
        """Send SIGTERM; the exit status and the seconds it took, within the grace period."""
        start = time.monotonic()
        self.podman("kill", "--signal", "TERM", self.name)
        try:
            status = subprocess.run(
                podman("wait", self.name),
                env=self.env,
                capture_output=True,
                text=True,
                timeout=GRACE_SECONDS,
            ).stdout.strip()
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{self.name} still ran {GRACE_SECONDS} s after SIGTERM") from None
        return int(status), time.monotonic() - start

    def remove(self) -> None:
        run(podman("rm", "--force", self.name), env=self.env, timeout=120, check=False)


def run_checks(env: dict[str, str]) -> None:
    tag = f"jewelry-check-{os.getpid()}"
    volume = f"{tag}-data"
    containers: list[Container] = []

    def container(name: str) -> Container:
        made = Container(env, f"{tag}-{name}", volume, free_port())
        containers.append(made)
        return made.start()

    unwritable = Path(tempfile.mkdtemp(prefix="jewelry-check-root-owned-"))
    try:
        run(podman("volume", "create", volume), env=env, timeout=60)
        first = container("first")
        checks_on_a_running_container(first)
        key, model = checks_of_demo_data_and_the_key(first, volume)
        checks_of_sigterm(first)
        first.remove()

        second = container("second")
        second.wait_live()
        stores = http(second.port, "/api/v1/stores", {"X-API-Key": key})
        expect(
            stores[0] == 200 and len(stores[1]["items"]) == 3,
            "a new container on the same volume has the database and the admin key",
            str(stores),
        )
        quote = http(second.port, "/api/v1/predict?carats=15")
        expect(quote[0] == 200 and quote[1]["model_version"] == model, "and the same model")
        checks_of_sigterm(second)

        unwritable.chmod(0o755)
        checks_of_an_unwritable_data_dir(env, unwritable, f"{tag}-root-owned")
    finally:
        for made in containers:
            made.remove()
        run(podman("volume", "rm", "--force", volume), env=env, timeout=60, check=False)
        shutil.rmtree(unwritable, ignore_errors=True)


def checks_on_a_running_container(container: Container) -> None:
    container.wait_live()
    report_ok(f"/health/live answers on {LOOPBACK}:{container.port} (JEWELRY_PORT)")
    expect(http(container.port, "/health/ready")[0] == 200, "/health/ready answers 200")
    health = run(
        podman("healthcheck", "run", container.name), env=container.env, timeout=60, check=False
    )
    expect(health.returncode == 0, "the image's HEALTHCHECK passes on that port", tail(health))

    pid = container.inspect("{{.State.Pid}}")
    status = Path(f"/proc/{pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.+)$", status, re.M)
    expect(
        uids is not None and set(uids.group(1).split()) == {str(SERVICE_UID)},
        f"the server runs as uid {SERVICE_UID}, not root",
        uids.group(0) if uids else status,
    )
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    expect("jewelry-forecast serve" in command, "the server is the container's PID 1", command)
    writable = container.exec("find", "/srv/jewelry", "-writable", "-print", "-quit").stdout
    expect(writable.strip() == "", "the code and its environment are read-only to it", writable)


def checks_of_demo_data_and_the_key(container: Container, volume: str) -> tuple[str, int]:
    demo = container.exec("jewelry-forecast", "demo")
    expect("loaded 3 stores" in demo.stdout, "demo data loads", tail(demo))
    quote = http(container.port, "/api/v1/predict?carats=15")
    expect(
        quote[0] == 200 and float(quote[1]["price"]) > 0,
        "a prediction is served",
        str(quote),
    )
    container.exec("jewelry-forecast", "rotate-admin-key")
    data = Path(
        run(
            podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume),
            env=container.env,
            timeout=60,
        ).stdout.strip()
    )
    key_file = data / "admin-key"
    expect(key_file.is_file(), "rotate-admin-key writes the key into the volume")
    files = {path: path.stat() for path in (data, key_file, data / "jewelry.db")}
    modes = {path.name: oct(stat.S_IMODE(info.st_mode)) for path, info in files.items()}
    expect(
        [oct(0o700), oct(0o600), oct(0o600)] == list(modes.values())
        and {info.st_uid for info in files.values()} == {SERVICE_UID},
        "the volume, the key and the database are private to the service's user",
        str(modes),
    )
    key = key_file.read_text().strip()
    stores = http(container.port, "/api/v1/stores", {"X-API-Key": key})
    expect(stores[0] == 200, "the key in the volume is the admin key", str(stores))
    return key, int(quote[1]["model_version"])


def checks_of_sigterm(container: Container) -> None:
    status, seconds = container.sigterm()
    expect(
        status == 0,
        f"SIGTERM stops it with status 0 in {seconds:.1f} s (grace period {GRACE_SECONDS} s)",
        f"status {status}:\n{container.logs()[-2000:]}",
    )


def checks_of_an_unwritable_data_dir(env: dict[str, str], directory: Path, name: str) -> None:
    # Detached, so that what the container printed is not mixed with podman's own messages.
    start = podman_run(
        "--detach", f"--name={name}", "--network=none", f"--volume={directory}:/data"
    )
    run([*start, IMAGE], env=env, timeout=120)
    try:
        status = run(podman("wait", name), env=env, timeout=60).stdout.strip()
        logs = run(podman("logs", name), env=env, timeout=60)
    finally:
        run(podman("rm", "--force", name), env=env, timeout=120, check=False)
    said = (logs.stdout + logs.stderr).strip()
    expect(
        status != "0" and "\n" not in said and "/data" in said and f"uid {SERVICE_UID}" in said,
        "a root-owned /data stops it with one line naming /data and the uid",
        f"status {status}: {said}",
    )


def report_sizes(env: dict[str, str]) -> None:
    size = int(
        run(podman("image", "inspect", "--format", "{{.Size}}", IMAGE), env=env, timeout=60).stdout
    )
    base = int(
        run(podman("image", "inspect", "--format", "{{.Size}}", BASE), env=env, timeout=60).stdout
    )
    measure = podman_run("--rm", "--network=none", "--entrypoint=python", IMAGE, "-c", SIZES)
    breakdown = run(measure, env=env, timeout=120).stdout
    print(f"image {IMAGE}: {mb(size)}: the stand-in base {mb(base)}, the project {mb(size - base)}")
    print(breakdown, end="")


def mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


# Run inside the image: what the project's layer holds, largest first.
SIZES = """
import sys
from pathlib import Path

def du(path):
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if not f.is_dir())

venv = Path("/srv/jewelry/.venv")
site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
groups = {}
for entry in site.iterdir():
    name = entry.name.split("-")[0].removesuffix(".libs").removesuffix(".py").lower()
    if entry.name.endswith((".dist-info", ".pth")) or name.startswith("_"):
        name = "(metadata, small modules)"
    groups[name] = groups.get(name, 0) + du(entry)
total = du(venv)
print(f"  virtual environment {total / 1e6:6.1f} MB, of which:")
ranked = sorted(groups.items(), key=lambda item: -item[1])
for name, size in ranked[:10]:
    print(f"    {name:28} {size / 1e6:6.1f} MB")
rest = sum(size for _, size in ranked[10:]) + total - sum(groups.values())
print(f"    {'everything else':28} {rest / 1e6:6.1f} MB")
code = sum(du(Path("/srv/jewelry", part)) for part in ("app", "models", "migrations"))
print(f"  the project's code {code / 1e6:6.1f} MB")
"""


if __name__ == "__main__":
    # Stopped by CI or by hand, it still removes its containers and volume on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
