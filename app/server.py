"""The HTTP protocol `jewelry-forecast serve` gives uvicorn: uvicorn's own, plus a connection
limit, timeouts for incomplete requests and TCP_NODELAY.

uvicorn alone keeps a connection that sends its headers one byte at a time open for ever (its
keep-alive timer stops at the first byte and it has no header timeout), and its
``limit_concurrency`` counts idle connections and answers 503 to fresh requests when they
fill it. Here, each worker:

- closes a connection whose request line and headers are not complete HEADER_TIMEOUT_SECONDS
  after it opened (or after its previous response), one whose request body pauses for
  BODY_TIMEOUT_SECONDS, and one whose client stops reading its response for
  WRITE_TIMEOUT_SECONDS (which also ends a stream, such as an export, held open that way);
- holds at most MAX_CONNECTIONS connections, and never more than its open-file limit allows:
  at the limit a new connection closes the one that has waited longest for a request (or for
  the rest of one); only when every other connection has a request in the app's hands is the
  new one closed instead;
- answers a request its parser refuses as the app answers every error, in JSON with a
  ``detail``, rather than uvicorn's plain text; and, under httptools, leaves out the spaces
  and tabs after a header's value (RFC 9110 5.5), which httptools keeps and h11 does not: a
  key followed by a space was an unknown key;
- sets TCP_NODELAY on every accepted TCP socket. asyncio sets it only on sockets it created
  with proto IPPROTO_TCP; with several workers uvicorn binds the listening socket itself
  (proto 0), and the second part of each response then waited for the client's delayed
  ACK: about 40 ms on every reused connection.
"""

import asyncio
import logging
import resource
import socket
from collections import OrderedDict
from contextlib import suppress
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from app.config import Settings

log = logging.getLogger("app.server")

# File descriptors a worker keeps for itself: database connections (three files each for
# SQLite in WAL mode), log and metrics files, the listening socket and the event loop.
RESERVED_FILES = 100


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    write_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "ConnectionLimits":
        # Past the open-file limit, accept() fails and the connections the limit would have
        # closed to make room hold every descriptor instead.
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        allowed = settings.MAX_CONNECTIONS
        if soft != resource.RLIM_INFINITY:
            allowed = max(1, min(allowed, soft - RESERVED_FILES))
        return cls(
            allowed,
            settings.HEADER_TIMEOUT_SECONDS,
            settings.BODY_TIMEOUT_SECONDS,
            settings.WRITE_TIMEOUT_SECONDS,
        )


@cache
def worker_limits() -> ConnectionLimits:
    """Read once per worker process, from the environment the service was started with."""
    limits = ConnectionLimits.from_settings(Settings())
    log.info("connection limits", extra={"fields": asdict(limits)})
    return limits


class WorkerConnections:
    """The guarded connections of one worker: how many are open (not yet being closed), and
    those waiting for their client, least recently heard from first."""

    def __init__(self) -> None:
        self.open = 0
        self.waiting: OrderedDict[GuardedConnection, None] = OrderedDict()


# One per uvicorn server (a worker's, or a test's).
_workers: WeakKeyDictionary[ServerState, WorkerConnections] = WeakKeyDictionary()


if TYPE_CHECKING:
    # What the mixin extends, for the type checker: both protocol classes have these parts.
    _UvicornProtocol = H11Protocol
else:
    _UvicornProtocol = object


class GuardedConnection(_UvicornProtocol):
    """Mixed in before one of uvicorn's HTTP/1.1 protocol classes (h11 or httptools), whose
    ``cycle`` (the current request: ``more_body``, ``response_complete``), ``flow``,
    ``transport``, ``server_state`` and ``loop`` it reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = worker_limits()
        self.worker = _workers.setdefault(self.server_state, WorkerConnections())
        self._counted = False
        # When the connection (accepted just now) last became ready for a request, and when it
        # last received bytes.
        self._idle_since = self._heard_at = self.loop.time()
        # Since when the response waits for the client to read what was sent (None: it reads).
        self._unread_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        # A request after the one being answered was refused: answered when that one is.
        self._refusal_pending = False
        self._timer_at = float("inf")

    # Narrower than asyncio's BaseTransport, as uvicorn's own protocol classes declare it.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with suppress(OSError):  # the peer may have gone already
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._counted = True
        self.worker.open += 1
        if self.worker.open > self.limits.max_connections:
            self._make_room()
        self._track()

    def send_400_response(self, msg: str) -> None:
        # Responses go out in the order of the requests (RFC 9112 9.3.2): one being answered,
        # or waiting in the pipeline, is answered before the refusal of the one after it,
        # which uvicorn would write at once, as if it were that request's answer.
        cycle = getattr(self, "cycle", None)
        if (cycle is not None and not cycle.response_complete) or getattr(self, "pipeline", None):
            self._refusal_pending = True
            return
        self._refuse()

    def _refuse(self) -> None:
        # uvicorn's one message, "Invalid HTTP request received.", said better here.
        body = b'{"detail":"not a valid HTTP/1.1 request: its request line, headers or framing"}'
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._heard_at = self.loop.time()
        super().data_received(data)
        self._track()

    def pause_writing(self) -> None:
        # asyncio's buffer for this socket is full: the client is not reading.
        self._unread_since = self.loop.time()
        super().pause_writing()
        self._track()

    def resume_writing(self) -> None:
        self._unread_since = None
        super().resume_writing()
        self._track()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        super().on_response_complete()
        if (
            self._refusal_pending
            and not self.transport.is_closing()
            and not getattr(self, "pipeline", None)
            and self.cycle.response_complete
        ):
            self._refuse()
            return
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def _wait(self) -> tuple[float, str] | None:
        """What this connection waits for from the client, and until when; None while the
        app has its request."""
        if self._unread_since is not None:
            return self._unread_since + self.limits.write_timeout, "the client to read"
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return self._idle_since + self.limits.header_timeout, "request headers"
        if cycle.more_body:
            if self.flow.read_paused:
                # Reading is paused until the app takes what came so far: not the client's fault.
                self._heard_at = self.loop.time()
            return self._heard_at + self.limits.body_timeout, "request body"
        return None

    def _track(self) -> None:
        """Brings the waiting list and the timer up to date after a change of state."""
        if self.transport.is_closing():
            return
        wait = self._wait()
        if wait is None:
            self.worker.waiting.pop(self, None)
            return
        self.worker.waiting[self] = None
        self.worker.waiting.move_to_end(self)
        if wait[0] < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wait[0]
            self._timer = self.loop.call_at(self._timer_at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        wait = self._wait()
        if wait is not None and self.loop.time() >= wait[0]:
            log.warning(
                "closed a connection: timed out", extra={"fields": {"waiting_for": wait[1]}}
            )
            self._close()
        else:
            self._track()

    def _make_room(self) -> None:
        victim = next(iter(self.worker.waiting), self)
        closed = "the new one" if victim is self else "the longest waiting for its client"
        log.warning(
            "closed a connection: connection limit reached",
            extra={"fields": {"limit": self.limits.max_connections, "closed": closed}},
        )
        victim._close()

    def _close(self) -> None:
        unread = self._unread_since is not None
        self._forget()
        # close() would first wait to send what the client is not reading.
        if unread:
            self.transport.abort()
        else:
            self.transport.close()

    def _forget(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")
        self.worker.waiting.pop(self, None)
        if self._counted:
            self._counted = False
            self.worker.open -= 1


class H11Connection(GuardedConnection, H11Protocol):
    pass


# The class uvicorn's "auto" would pick: httptools when it is installed, else h11. Both are
# module attributes so that uvicorn can pass them to the worker processes it spawns.
PROTOCOLS: list[type[asyncio.Protocol]] = [H11Connection]
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:
    pass
else:
    # The mixin is typed against h11's class; httptools' has the same parts, annotated apart.
    class HttpToolsConnection(GuardedConnection, HttpToolsProtocol):  # type: ignore[misc]
        def on_header(self, name: bytes, value: bytes) -> None:
            super().on_header(name, value.rstrip(b" \t"))

    PROTOCOLS.append(HttpToolsConnection)
HTTP_PROTOCOL = PROTOCOLS[-1]
