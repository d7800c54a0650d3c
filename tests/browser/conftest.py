"""Browser tests of the dashboard: Debian's Chromium, driven by Playwright, against a real
`jewelry-forecast serve` on a free loopback port.

Playwright's own browser download cannot run on machines that reach only package registries,
so the tests launch Debian's chromium by its path; `make chromium` (which `make test` runs
first) installs it. A missing browser fails the tests rather than skipping them.

They run on SQLite only: the page reads the same HTTP API whatever the database behind it,
and the API tests already run on both.
"""

import base64
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import ADMIN, ADMIN_KEY
from tests.servers import CLI, LOOPBACK, Server

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium calls home at start; here that would be
# both a failure and a request leaving the machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
# Where the page keeps the key: app/web/api.js.
KEY_SLOT = "jewelry-forecast.api-key"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 800, "height": 1000}

expect.set_options(timeout=15_000)


# Per module, not per session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and tests after these ones start event loops of their own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing ({CHROMIUM}): install it with `make chromium` "
            "(apt-get update && apt-get install -y chromium); `make test` does it first",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def start_server(data: Path, *, demo: bool) -> Server:
    """A server on a SQLite file in `data`, loaded as `make run` loads it when `demo`."""
    server = Server(f"sqlite:///{data / 'jewelry.db'}", data)
    if demo:
        loaded = subprocess.run(
            [CLI, "demo"], env=server.env, capture_output=True, text=True, timeout=120
        )
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    return server.start()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`jewelry-forecast demo` (3 stores, 300 sales, version 1), plus three sales recorded
    after the training, so that the live error has something to show."""
    server = start_server(tmp_path_factory.mktemp("demo"), demo=True)
    try:
        later = [
            {"store_id": 1, "carats": c, "price": p} for c, p in ((2, 140), (8, 450), (15, 770))
        ]
        with server.client() as http:
            response = http.post("/api/v1/sales/batch", json={"records": later}, headers=ADMIN)
            assert response.status_code == 201, response.text
        yield server
    finally:
        server.close()


@pytest.fixture
def api(demo: Server) -> Iterator[httpx.Client]:
    """The demo server's API, with the admin key."""
    with demo.client(headers=ADMIN) as http:
        yield http


@dataclass
class Watched:
    """A page and what it did: console errors, uncaught exceptions, every request."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def left_the_machine(self) -> list[str]:
        return [url for url in self.requests if urlsplit(url).hostname != LOOPBACK]


OpenPage = Callable[..., Watched]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Opens the dashboard of a server in a fresh browser context (its own session storage),
    with the admin key already in the tab unless `key` says otherwise; waits until the first
    load has drawn everything. After the test: no request left 127.0.0.1, and no script
    threw, on any page it opened."""
    opened: list[Watched] = []

    def open_(server: Server, *, key: str | None = ADMIN_KEY, viewport: dict = WIDE) -> Watched:
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        watched = Watched(page)
        page.on("request", lambda request: watched.requests.append(request.url))
        page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                watched.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        if key is not None:
            page.add_init_script(f"sessionStorage.setItem({KEY_SLOT!r}, {key!r})")
        opened.append(watched)
        page.goto(f"{server.base_url}/")
        expect(page.locator("main")).to_have_attribute("aria-busy", "false")
        return watched

    yield open_
    for watched in opened:
        watched.page.context.close()
    for watched in opened:
        assert watched.left_the_machine() == [], "requests left the machine"
        assert watched.page_errors == [], "the page's scripts threw"


def save_screenshot(watched: Watched, browser: Browser, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot under the test's tmp dir and in test-artifacts/, after checking
    that it shows something: many colours, and ink on a good part of it."""
    path = tmp_path / name
    png = watched.page.screenshot(path=path, full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    print(f"\nscreenshot: {path} (copied to {ARTIFACTS / name})")
    colours, inked = _ink(browser, png)
    assert colours > 200, f"the screenshot has only {colours} colours: {path}"
    assert inked > 0.02, f"only {inked:.1%} of the screenshot is not background: {path}"
    return path


def _ink(browser: Browser, png: bytes) -> tuple[int, float]:
    """Distinct colours and the share of pixels darker than the page's background, decoded
    by the browser itself in a blank page of its own."""
    page = browser.new_page()
    try:
        return tuple(
            page.evaluate(
                """async (data) => {
                    const image = new Image();
                    image.src = `data:image/png;base64,${data}`;
                    await image.decode();
                    const canvas = new OffscreenCanvas(image.width, image.height);
                    const context = canvas.getContext("2d");
                    context.drawImage(image, 0, 0);
                    const pixels = context.getImageData(0, 0, image.width, image.height).data;
                    const colours = new Set();
                    let inked = 0;
                    let seen = 0;
                    for (let i = 0; i < pixels.length; i += 4 * 5) {
                        const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
                        colours.add((r << 16) | (g << 8) | b);
                        inked += r + g + b < 660 ? 1 : 0;
                        seen += 1;
                    }
                    return [colours.size, inked / seen];
                }""",
                base64.b64encode(png).decode(),
            )
        )
    finally:
        page.close()
