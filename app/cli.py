"""``jewelry-forecast``: run the service, migrate, load demo data; the commands that talk to a
running service are in app/client.py."""

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from app.client import add_commands
from app.config import METRICS_DIR_VARIABLE, Settings
from app.db import backend
from app.files import ensure_data_dir, write_secret
from app.processes import running


def _settings(*, keeps_key: bool = False) -> Settings:
    """The settings, after readying the data directory when this command writes there, so
    that one the user cannot write fails in one line rather than in SQLite's traceback."""
    settings = Settings()
    if keeps_key or backend(settings.DATABASE_URL) == "sqlite":
        ensure_data_dir(settings.DATA_DIR)
    return settings


# A serve's metrics directory is named for its process, so that one a killed serve left
# behind can be told from one in use.
METRICS_DIR_PREFIX = "jewelry-metrics-"


def _remove_abandoned_metrics() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid = path.name.removeprefix(METRICS_DIR_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _serve(args: argparse.Namespace) -> int:
    # Every worker keeps its metrics in files here, so that /metrics adds up all workers
    # whichever answers. prometheus_client reads the variable when it is first imported: set
    # it before anything imports it (with one worker, uvicorn imports the app in this process).
    _remove_abandoned_metrics()
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ[METRICS_DIR_VARIABLE] = metrics_dir
    # With one worker, uvicorn raises SIGTERM again once it has shut down. As an interrupt,
    # which uvicorn.run absorbs, it lets the directory be removed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run_uvicorn(args)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(args: argparse.Namespace) -> int:
    import uvicorn

    from app.logs import configure_logging
    from app.server import HTTP_PROTOCOL

    settings = _settings()
    # uvicorn's own lines go through the same JSON formatter as ours.
    configure_logging(settings.LOG_LEVEL, settings.LOG_REPEAT_SECONDS)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        log_config=None,
        host=settings.HOST if args.host is None else args.host,
        port=settings.PORT if args.port is None else args.port,
        workers=settings.WORKERS if args.workers is None else args.workers,
        timeout_graceful_shutdown=args.graceful_timeout,
        # uvicorn kills a worker that does not answer its supervisor's ping, or finish its
        # start (migrations included), within this: 5 s by default, which a loaded 2-core
        # machine exceeded, killing healthy workers.
        timeout_worker_healthcheck=30,
        proxy_headers=True,
        http=HTTP_PROTOCOL,
        # No route speaks WebSocket, and the protocol's timers would close an upgraded
        # connection as one that never sent its request.
        ws="none",
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from app import migrate
    from app.db import Database

    db = Database(_settings())
    if args.downgrade:
        migrate.downgrade(db.engine, args.downgrade)
    else:
        migrate.upgrade(db.engine)
    print(f"schema at {migrate.current_revision(db.engine)}")
    return 0


def _rotate_admin_key(_: argparse.Namespace) -> int:
    from app.db import Database
    from app.main import prepare_database
    from app.services.auth import rotate_admin_key

    settings = _settings(keeps_key=True)
    if settings.ADMIN_API_KEY is not None:
        print("JEWELRY_ADMIN_API_KEY is set: change it there instead", file=sys.stderr)
        return 2
    db = Database(settings)
    prepare_database(db, settings)
    with db.session(write=True) as session:
        key = rotate_admin_key(session)
    _save_admin_key(settings, key)
    print(f"new admin key (old one revoked), saved to {settings.admin_key_file}:\n  {key}")
    return 0


def _save_admin_key(settings: Settings, key: str) -> None:
    write_secret(settings.admin_key_file, key + "\n")


def _demo(args: argparse.Namespace) -> int:
    from app.db import Database
    from app.demo import load_demo
    from app.main import prepare_database

    settings = _settings(keeps_key=True)
    db = Database(settings)
    new_key = prepare_database(db, settings)
    if new_key is not None:
        _save_admin_key(settings, new_key)
    with tqdm(total=args.sales, unit="sale", desc="demo sales") as bar:
        version = load_demo(db, settings, n_sales=args.sales, seed=args.seed, progress=bar.update)
    if version is None:
        print("the database already has stores: leaving it as it is")
    else:
        print(
            f"loaded 3 stores and their sales; trained model version {version.version}: "
            f"silver ${version.silver_price:.2f}, gold ${version.gold_price_per_carat:.2f} "
            "per carat"
        )
    return _demo_banner(args, settings)


def _demo_banner(args: argparse.Namespace, settings: Settings) -> int:
    host = settings.HOST if args.host is None else args.host
    port = settings.PORT if args.port is None else args.port
    base = f"http://{host}:{port}"
    if settings.ADMIN_API_KEY is not None:
        where = "the admin key is JEWELRY_ADMIN_API_KEY"
    elif settings.admin_key_file.exists():
        where = f"the admin key is in {settings.admin_key_file}"
    else:
        where = "the admin key was printed when it was made (jewelry-forecast rotate-admin-key)"
    print(f"API docs: {base}/docs\n{where}\ntry: curl '{base}/api/v1/predict?carats=15'")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="jewelry-forecast", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="default: $JEWELRY_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: $JEWELRY_PORT or 8000")
    serve.add_argument("--workers", type=int, help="default: $JEWELRY_WORKERS or 2")
    serve.add_argument("--graceful-timeout", type=int, default=20, help="seconds")
    serve.set_defaults(run=_serve)

    mig = commands.add_parser("migrate", help="bring the database schema to head")
    mig.add_argument("--downgrade", metavar="REVISION", help="go down to REVISION instead")
    mig.set_defaults(run=_migrate)

    demo = commands.add_parser("demo", help="load three stores with sample sales and train")
    demo.add_argument("--sales", type=int, default=300)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--host", help="for the banner; default: $JEWELRY_HOST or 127.0.0.1")
    demo.add_argument("--port", type=int, help="for the banner; default: $JEWELRY_PORT or 8000")
    demo.set_defaults(run=_demo)

    rotate = commands.add_parser("rotate-admin-key", help="replace the generated admin key")
    rotate.set_defaults(run=_rotate_admin_key)

    add_commands(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
