"""Structured (JSON lines) logging carrying the request id. Keys are never passed to a logger."""

import logging
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


@dataclass
class _Repeats:
    shown_at: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Lets a warning or error through the first time, then at most once per interval, with
    the number of repeats held back since (field ``suppressed``).

    A message is its logger, level and unformatted text. Without this, a worker out of file
    descriptors logs a traceback for every failed accept: thousands a second.
    """

    # Distinct messages tracked at once; beyond it, messages pass unfiltered.
    MAX_TRACKED = 1024

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Repeats] = {}
        # Sync routes log from the thread pool.
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.shown_at < self.interval:
                seen.suppressed += 1
                return False
            if seen is None and len(self._seen) >= self.MAX_TRACKED:
                self._forget_before(now - self.interval)
                if len(self._seen) >= self.MAX_TRACKED:
                    return True
            self._seen[key] = _Repeats(shown_at=now)
        if seen is not None and seen.suppressed:
            record.fields = {**getattr(record, "fields", {}), "suppressed": seen.suppressed}
        return True

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, seen in self._seen.items() if seen.shown_at < cutoff]:
            del self._seen[key]


def configure_logging(level: str, repeat_interval: float) -> None:
    # What JsonFormatter never writes is not gathered either: the caller's file and line (a
    # walk up the stack), the thread and the process. The logging HOWTO's "Optimization"
    # names these switches; the access log line went from 17.5 us to 7.5 us.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter(repeat_interval))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours, without the request id.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
