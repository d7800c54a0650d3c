"""The dashboard: a static page at ``/`` whose scripts read the public API, like any client.

The files in ``app/web/`` are served as they are (no build step). Their names carry no
content hash, so browsers must revalidate them on every load (``no-cache``, answered with a
304 while the ETag still matches) rather than keep a stale script after an upgrade.
"""

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# Everything the page loads comes from this origin: no inline script or style, no other host.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)
# Starlette's file serving: path checks, ETag and Last-Modified, 304s.
_files = StaticFiles(directory=WEB_DIR)


async def _serve(path: str, request: Request) -> Response:
    # The files are a few kilobytes: a Range header is ignored, as RFC 9110 allows, so that
    # there are no partial, unsatisfiable or malformed-range answers to get wrong.
    # (The response reads the request's own scope when it is sent.)
    scope = request.scope
    scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]
    response = await _files.get_response(path, scope)
    del response.headers["accept-ranges"]
    response.headers.update(HEADERS)
    return response


@router.api_route("/", methods=["GET", "HEAD"])
async def dashboard(request: Request) -> Response:
    return await _serve("index.html", request)


@router.api_route("/static/{path:path}", methods=["GET", "HEAD"])
async def asset(path: str, request: Request) -> Response:
    return await _serve(path, request)
