"""The command line's client commands: they talk to a running service over HTTP.

Each prints what a person wants to read, or with ``--json`` the service's own JSON; a refusal
prints the service's ``detail`` on stderr and exits with status 1, an argument that cannot work
exits with 2, and a command stopped by SIGINT, SIGTERM or SIGHUP with 128 + the signal.
"""

import argparse
import json
import math
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast, get_args

import httpx
from tqdm import tqdm

from app.config import Settings
from app.fields import NUMBER_TEXT
from models.params import Method

DEFAULT_URL = "http://127.0.0.1:8000"


class Refused(Exception):
    """The service answered with an error; its detail is the message."""


class NotUnderstood(Exception):
    """The answer is not one the service gives: another server, or a proxy's error page."""


class NoSuchPath(Exception):
    """The server has no such path: the URL is not the service's base URL."""


class Unusable(Exception):
    """An argument that cannot work, found when the command runs: a usage error (status 2)."""


class Stopped(BaseException):
    """A signal asked the command to stop; a BaseException, so that only cleanup sees it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _key(args: argparse.Namespace, *, needs_key: bool) -> str | None:
    """The key to send: the one the user gave, or for a command that needs one the admin key
    the service saved. That key never goes with a public command: --url may name any server."""
    key = args.key or os.environ.get("JEWELRY_API_KEY")
    if not key and needs_key and (key_file := Settings().admin_key_file).exists():
        key = key_file.read_text().strip()
    return key or None


def _client(args: argparse.Namespace, *, needs_key: bool) -> httpx.Client:
    key = _key(args, needs_key=needs_key)
    if needs_key and key is None:
        raise SystemExit("no API key: pass --key, set JEWELRY_API_KEY, or run demo first")
    headers = {"X-API-Key": key} if key else {}
    return httpx.Client(base_url=args.url, headers=headers, timeout=300.0)


def _checked(response: httpx.Response) -> Any:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if response.is_success and body is not None:
        return body
    # The service's own 404s name what is missing; routing's says only this.
    if response.status_code == 404 and detail in (None, "Not Found"):
        raise NoSuchPath(response.request.url.path)
    if isinstance(detail, list):  # a 422: each problem on its own line
        detail = "\n".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
    if not isinstance(detail, str):
        raise NotUnderstood
    if response.status_code == 401 and "X-API-Key" not in response.request.headers:
        detail += ": this service answers only with a key: pass --key or set JEWELRY_API_KEY"
    raise Refused(f"{response.status_code}: {detail}")


def number(text: str) -> float:
    """A number argument written as the service reads numbers (15, 2.5, 1e3): what it would
    refuse (nan, inf, 1_0, full-width digits) is refused here."""
    if not NUMBER_TEXT.fullmatch(text):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def rate_or_auto(text: str) -> str | float:
    return text if text == "auto" else number(text)


def version(text: str) -> int:
    """A model version: a positive integer (the service has no route for others)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave: the service applies its own defaults to the others."""
    return {name: value for name, value in options.items() if value is not None}


def _dollars(value: float | str | None) -> str:
    return "n/a" if value is None else f"${float(value):,.2f}"


def _interval(interval: dict[str, Any] | None) -> str:
    if interval is None:
        return "no interval (fewer than 3 sales)"
    level = round(interval["level"] * 100)
    return f"{level}% interval {_dollars(interval['lower'])} to {_dollars(interval['upper'])}"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# Commands: each returns the JSON it got and the text a person reads.


def _quote(args: argparse.Namespace, http: httpx.Client) -> tuple[Any, str]:
    body = _checked(http.post("/api/v1/predict", json={"carats": args.carats}))
    lines = [
        f"{q['carats']:.15g} carats: {_dollars(q['price'])} ({_interval(q['interval'])})"
        for q in body["predictions"]
    ]
    return body, "\n".join([*lines, f"model version {body['model_version']}"])


def _prices(args: argparse.Namespace, http: httpx.Client) -> tuple[Any, str]:
    body = _checked(http.get("/api/v1/prices"))
    text = "\n".join(
        [
            f"silver price:         {_dollars(body['silver_price'])} "
            f"({_interval(body['silver_price_interval'])})",
            f"gold price per carat: {_dollars(body['gold_price_per_carat'])} "
            f"({_interval(body['gold_price_per_carat_interval'])})",
            f"model version {body['model_version']}, trained {body['trained_at']} "
            f"on {body['n_samples']} sales",
        ]
    )
    return body, text


def _models(args: argparse.Namespace, http: httpx.Client) -> tuple[Any, str]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        # Pages of the service's own default size, which its maximum never refuses.
        params: dict[str, str] = {"cursor": cursor} if cursor else {}
        page = _checked(http.get("/api/v1/models", params=params))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    rows = [["", "version", "trained", "method", "rate", "iterations", "converged", "rmse", "r2"]]
    rows[0].append("live rmse (sales)")
    for m in items:
        live = m["live"]
        rows.append(
            [
                "*" if m["active"] else "",
                str(m["version"]),
                m["trained_at"][:19].replace("T", " "),
                m["parameters"]["method"],
                str(m["parameters"]["learning_rate"]),
                str(m["iterations"]),
                "yes" if m["converged"] else "no",
                f"{m['metrics']['rmse']:.2f}",
                f"{m['metrics']['r2']:.4f}",
                f"{_dollars(live['rmse'])} ({live['n_sales']})"
                if live["rmse"] is not None
                else "-",
            ]
        )
    text = _table(rows) if items else "no versions yet: train one"
    return {"items": items}, text


def _activate(args: argparse.Namespace, http: httpx.Client) -> tuple[Any, str]:
    body = _checked(http.post(f"/api/v1/models/{args.version}/activate"))
    return body, f"version {body['version']} is active"


def _train(args: argparse.Namespace, http: httpx.Client) -> tuple[Any, str]:
    body = _given(max_iterations=args.max_iterations, tolerance=args.tolerance, method=args.method)
    if args.learning_rate is not None:
        body["learning_rate"] = args.learning_rate
    if args.no_scaling:
        body["feature_scaling"] = False
    version = _checked(http.post("/api/v1/train", json=body))
    text = (
        f"version {version['version']} ({version['status']}"
        f"{', active' if version['active'] else ''}): silver "
        f"{_dollars(version['silver_price'])}, gold {_dollars(version['gold_price_per_carat'])} "
        f"per carat, from {version['n_samples']} sales in {version['iterations']} iterations"
    )
    return version, text


class _Progress:
    """A file whose reads advance a progress bar, so an upload shows how far it got."""

    def __init__(self, file: BinaryIO, bar: tqdm) -> None:  # type: ignore[type-arg]
        self._file = file
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._bar.update(len(chunk))
        return chunk


def _import(args: argparse.Namespace, http: httpx.Client) -> tuple[Any, str]:
    path = Path(args.file)
    with (
        path.open("rb") as file,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name) as bar,
    ):
        # httpx reads the upload through read() only: a file in all but name.
        upload = cast(BinaryIO, _Progress(file, bar))
        files = {"file": (path.name, upload, "text/csv")}
        body = _checked(http.post("/api/v1/sales/import", files=files))
    return body, f"imported {body['count']} sales from {path}"


def _export_target(name: str) -> Path:
    """The file the export replaces, or creates in a directory that exists.

    Only a regular file is replaced: renaming the download over anything else would turn a
    symbolic link into a file and take the place of a device. A link is refused rather than
    followed, so that the file written is the one named.
    """
    if not name:
        raise Unusable("give the file to write the sales to, e.g. sales.csv")
    path = Path(name)
    try:
        mode: int | None = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is None:
        if name.endswith("/"):
            raise Unusable(f"{name} is a directory name: add the file's, e.g. {name}sales.csv")
        if not path.parent.is_dir():
            raise Unusable(f"no directory {path.parent} to write {path.name} in")
        return path
    if stat.S_ISDIR(mode):
        raise Unusable(f"{name} is a directory: give the file's name, e.g. {path / 'sales.csv'}")
    if stat.S_ISLNK(mode):
        raise Unusable(f"{name} is a symbolic link: give the file it points to")
    if not stat.S_ISREG(mode):
        raise Unusable(f"{name} is not a regular file: give a file's name")
    return path


def _export(args: argparse.Namespace, http: httpx.Client) -> tuple[Any, str]:
    params = _given(store_id=args.store_id, sold_since=args.sold_since, sold_until=args.sold_until)
    path = _export_target(args.file)
    # Written beside the target and renamed over it only when complete: a download cut short
    # leaves no file that would import as a silent subset, nor spoils an earlier one. Made
    # before asking, so that a directory it cannot be written in costs no download; its own
    # name, so that two exports to one file do not write into each other's.
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    partial = Path(name)
    rows = 0
    try:
        with (
            os.fdopen(descriptor, "wb") as out,
            http.stream("GET", "/api/v1/sales/export", params=params) as response,
        ):
            if not response.is_success:
                response.read()
                _checked(response)
            try:
                with tqdm(unit="B", unit_scale=True, desc=path.name) as bar:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        rows += chunk.count(b"\n")
                        bar.update(len(chunk))
            except httpx.TransportError as exc:
                raise Refused(
                    f"the download was cut after {max(rows - 1, 0)} sales ({exc}); "
                    f"{path} was left as it was"
                ) from None
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    sales = max(rows - 1, 0)  # the header
    return {"count": sales, "file": str(path)}, f"exported {sales} sales to {path}"


Command = Callable[[argparse.Namespace, httpx.Client], tuple[Any, str]]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise Stopped, so that an export removes its partial file
    whichever stops it. One ignored on entry (nohup's SIGHUP) stays ignored."""
    previous = {
        sig: signal.signal(sig, _stop)
        for sig in STOP_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(command: Command, needs_key: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with _stoppable(), _client(args, needs_key=needs_key) as http:
                body, text = command(args, http)
        except Stopped as stop:
            print(
                f"jewelry-forecast: stopped by {signal.Signals(stop.signum).name}", file=sys.stderr
            )
            return 128 + stop.signum
        except Unusable as problem:
            print(f"jewelry-forecast: {problem}", file=sys.stderr)
            return 2
        except Refused as refusal:
            print(refusal, file=sys.stderr)
            return 1
        except NoSuchPath as path:
            print(
                f"the service at {args.url} has no {path}: give its base URL, e.g. {DEFAULT_URL}",
                file=sys.stderr,
            )
            return 1
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            print(f"not a service URL: {args.url} ({exc})", file=sys.stderr)
            return 2
        except httpx.TransportError as exc:
            print(f"cannot reach the service at {args.url}: {exc}", file=sys.stderr)
            return 1
        except (OSError, UnicodeError) as exc:
            print(f"jewelry-forecast: {exc}", file=sys.stderr)
            return 1
        except (NotUnderstood, LookupError, TypeError, ValueError):
            # The errors of JSON of another shape than the service's: a field a command reads
            # is missing or of another type.
            print(
                f"the service at {args.url} answered something this client does not understand",
                file=sys.stderr,
            )
            return 1
        print(json.dumps(body, indent=2) if args.json else text)
        return 0

    return run


def add_commands(commands: Any) -> None:
    """Add the client commands to the command line's subparsers."""

    def command(
        name: str, help_text: str, run: Command, *, needs_key: bool
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        sub.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
        sub.add_argument("--key", help="API key (default: $JEWELRY_API_KEY or data/admin-key)")
        sub.add_argument("--json", action="store_true", help="print the service's JSON")
        sub.set_defaults(run=_run(run, needs_key))
        return sub

    quote = command("quote", "quote rings of the given carats", _quote, needs_key=False)
    quote.add_argument("carats", nargs="+", type=number)
    command("prices", "the learned silver price and gold price per carat", _prices, needs_key=False)
    command("models", "the trained versions, newest first", _models, needs_key=False)
    activate = command("activate", "serve another version", _activate, needs_key=True)
    activate.add_argument("version", type=version)
    train = command("train", "train a new version", _train, needs_key=True)
    train.add_argument("--learning-rate", type=rate_or_auto, help='"auto" or a number')
    train.add_argument("--max-iterations", type=int)
    train.add_argument("--tolerance", type=number)
    train.add_argument("--method", choices=get_args(Method))
    train.add_argument("--no-scaling", action="store_true")
    upload = command("import", "upload a CSV file of sales", _import, needs_key=True)
    upload.add_argument("file")
    export = command("export", "download the sales as CSV", _export, needs_key=True)
    export.add_argument("file")
    export.add_argument("--store-id", type=int)
    export.add_argument("--sold-since", help="RFC 3339, e.g. 2026-11-01T00:00:00Z")
    export.add_argument("--sold-until", help="RFC 3339")
