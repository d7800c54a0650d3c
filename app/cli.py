"""``jewelry-forecast``: run the service, migrate, load demo data, and talk to a server."""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import numpy as np
from tqdm import tqdm

from app.config import METRICS_DIR_VARIABLE, Settings
from app.files import ensure_data_dir, write_secret

DEMO_STORES = ("Aurum & Co", "Goldsmith Lane", "Carat Corner")


def _settings(*, keeps_key: bool = False) -> Settings:
    """The settings, after readying the data directory when this command writes there, so
    that one the user cannot write fails in one line rather than in SQLite's traceback."""
    settings = Settings()
    if keeps_key or settings.is_sqlite:
        ensure_data_dir(settings.DATA_DIR)
    return settings


def _serve(args: argparse.Namespace) -> int:
    # Every worker keeps its metrics in files here, so that /metrics adds up all workers
    # whichever answers. prometheus_client reads the variable when it is first imported: set
    # it before anything imports it (with one worker, uvicorn imports the app in this process).
    metrics_dir = tempfile.mkdtemp(prefix="jewelry-metrics-")
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
        workers=args.workers,
        timeout_graceful_shutdown=args.graceful_timeout,
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


def demo_sales(rng: np.random.Generator, n: int) -> list[tuple[float, Decimal, datetime]]:
    """Rings of 0.5-25 carats with about $30 of silver and gold at $40-60 a carat."""
    now = datetime.now(UTC)
    carats = np.round(rng.uniform(0.5, 25.0, n), 2)
    gold = rng.uniform(40.0, 60.0, n)
    silver = rng.normal(30.0, 1.5, n)
    ages = rng.uniform(0, 90, n)
    return [
        (float(c), Decimal(f"{s + g * c:.2f}"), now - timedelta(days=float(a)))
        for c, g, s, a in zip(carats, gold, silver, ages, strict=True)
    ]


def _demo(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from app.db import Database
    from app.main import prepare_database
    from app.orm import Sale
    from app.schemas import TrainRequest
    from app.security import Caller
    from app.services import sales, stores, training

    settings = _settings(keeps_key=True)
    db = Database(settings)
    new_key = prepare_database(db, settings)
    if new_key is not None:
        _save_admin_key(settings, new_key)
    with db.session(write=True) as session:
        if session.scalar(select(func.count()).select_from(Sale)):
            print("the database already has sales: leaving it as it is")
            return _demo_banner(args, settings)
        rng = np.random.default_rng(args.seed)
        for name in DEMO_STORES:
            store, _ = stores.create_store(session, name)
            records = [
                sales.NewSale(carats=c, price=p, store_id=store.id, sold_at=t)
                for c, p, t in demo_sales(rng, args.sales // len(DEMO_STORES))
            ]
            sales.record_sales(session, Caller("admin"), records)
    lease_ttl = timedelta(seconds=settings.TRAINING_LEASE_SECONDS)
    version = training.train(db, TrainRequest(), lease_ttl)
    print(
        f"loaded {len(DEMO_STORES)} stores and their sales; trained model version "
        f"{version.version}: silver ${version.silver_price:.2f}, "
        f"gold ${version.gold_price_per_carat:.2f} per carat"
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


def _client(args: argparse.Namespace) -> httpx.Client:
    key = args.key or os.environ.get("JEWELRY_API_KEY")
    key_file = Settings().admin_key_file
    if not key and key_file.exists():
        key = key_file.read_text().strip()
    if not key:
        raise SystemExit("no API key: pass --key, set JEWELRY_API_KEY, or run demo first")
    return httpx.Client(base_url=args.url, headers={"X-API-Key": key}, timeout=300.0)


def _show(response: httpx.Response) -> int:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    print(json.dumps(body, indent=2))
    return 0 if response.is_success else 1


def _train(args: argparse.Namespace) -> int:
    body = {
        k: v
        for k, v in {
            "learning_rate": args.learning_rate,
            "max_iterations": args.max_iterations,
            "tolerance": args.tolerance,
            "method": args.method,
        }.items()
        if v is not None
    }
    if body.get("learning_rate") not in (None, "auto"):
        body["learning_rate"] = float(body["learning_rate"])
    if args.no_scaling:
        body["feature_scaling"] = False
    with _client(args) as client:
        return _show(client.post("/api/v1/train", json=body))


class _Progress:
    """A file whose reads advance a progress bar, so an upload shows how far it got."""

    def __init__(self, file: BinaryIO, bar: tqdm) -> None:
        self._file = file
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._bar.update(len(chunk))
        return chunk


def _import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    with (
        _client(args) as client,
        path.open("rb") as file,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name) as bar,
    ):
        files = {"file": (path.name, _Progress(file, bar), "text/csv")}
        return _show(client.post("/api/v1/sales/import", files=files))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="jewelry-forecast", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="default: $JEWELRY_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: $JEWELRY_PORT or 8000")
    serve.add_argument("--workers", type=int, default=1)
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

    for name, help_text, run in (
        ("train", "ask a running service to train a new model", _train),
        ("import", "upload a CSV file of sales to a running service", _import),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--url", default="http://127.0.0.1:8000")
        sub.add_argument("--key", help="API key (default: $JEWELRY_API_KEY or data/admin-key)")
        sub.set_defaults(run=run)
        if name == "import":
            sub.add_argument("file")
        else:
            sub.add_argument("--learning-rate")
            sub.add_argument("--max-iterations", type=int)
            sub.add_argument("--tolerance", type=float)
            sub.add_argument("--method", choices=["batch", "minibatch", "sgd"])
            sub.add_argument("--no-scaling", action="store_true")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
