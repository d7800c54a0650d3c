"""The dashboard on a server loaded as `make run` loads it, in a real browser.

The tests share one server and run in this order: the read-only views first, then training
from the form (which adds versions), then activation and deletion.
"""

import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.routes.web import CONTENT_SECURITY_POLICY
from tests.browser.conftest import KEY_SLOT, PHONE, TABLET, OpenPage, save_screenshot
from tests.helpers import ADMIN_KEY
from tests.servers import Server

DOLLARS = re.compile(r"-?\$[0-9,]+\.[0-9]{2}")


def dollars_in(text: str) -> list[Decimal]:
    """Every dollar amount in a text, in order: "$1,234.50 to $2.00" -> [1234.50, 2.00]."""
    return [Decimal(m.replace("$", "").replace(",", "")) for m in DOLLARS.findall(text)]


def amount(text: str) -> str:
    """An amount as the API sends it ("1234.50") as the page must show it ("$1,234.50")."""
    return f"${Decimal(text):,.2f}".replace("$-", "-$")


def assert_shows(page: Page, selector: str, *estimates: float) -> None:
    """The element shows these estimates as dollars, to the cent (a shown cent is the
    estimate's nearest, so they differ by half a cent at most)."""
    shown = dollars_in(page.locator(selector).inner_text())
    assert len(shown) == len(estimates), (selector, shown, estimates)
    for cents, value in zip(shown, estimates, strict=True):
        assert abs(float(cents) - value) <= 0.005 + 1e-9, (selector, cents, value)


def test_the_page_and_its_files_are_served_with_a_strict_policy(demo: Server) -> None:
    with demo.client() as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert page.headers["cache-control"] == "no-cache"
        again = http.get("/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304
        assert http.head("/").status_code == 200
        # The policy allows no inline script or style: everything is in files.
        html = page.text
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
        assert re.search(r"<style|\sstyle=|\son[a-z]+=", html) is None
        for name, kind in (
            ("app.js", "javascript"),
            ("charts.js", "javascript"),
            ("style.css", "css"),
        ):
            asset = http.get(f"/static/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"], name
            assert asset.headers["cache-control"] == "no-cache"
        assert http.get("/static/nothing.js").status_code == 404
        assert http.get("/static/%2e%2e/routes/web.py").status_code == 404
        paths = http.get("/openapi.json").json()["paths"]
        assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_the_main_view_shows_what_the_api_answers(
    demo: Server, api: httpx.Client, open_page: OpenPage, browser: Browser, tmp_path: Path
) -> None:
    watched = open_page(demo)
    page = watched.page
    prices = api.get("/api/v1/prices").json()
    active = api.get("/api/v1/models/active").json()
    models = api.get("/api/v1/models").json()["items"]
    sample = api.get("/api/v1/sales/sample", params={"size": 1000}).json()
    history = api.get("/api/v1/prices/history", params={"period": "month"}).json()["items"]
    curve = api.get(f"/api/v1/models/{active['version']}/cost-history").json()

    # 1. The active model at a glance.
    assert_shows(page, "#silver-price", prices["silver_price"])
    interval = prices["silver_price_interval"]
    assert_shows(page, "#silver-interval", interval["lower"], interval["upper"])
    assert_shows(page, "#gold-price", prices["gold_price_per_carat"])
    interval = prices["gold_price_per_carat_interval"]
    assert_shows(page, "#gold-interval", interval["lower"], interval["upper"])
    expect(page.locator("#model-version")).to_have_text(f"v{prices['model_version']}")
    expect(page.locator("#model-sales")).to_have_text(f"{prices['n_samples']:,}")
    assert abs(float(page.locator("#fit-r2").inner_text()) - active["metrics"]["r2"]) <= 5e-5
    assert_shows(page, "#fit-rmse", active["metrics"]["rmse"])
    live = active["live"]
    assert live["n_sales"] == 3
    assert_shows(page, "#live-rmse", live["rmse"])
    assert_shows(page, "#live-detail", live["bias"])
    expect(page.locator("#live-detail")).to_contain_text("on 3 sales since training")

    # 2. Every sale of the sample, and the model's line and band from the API's quotes.
    expect(page.locator("#sales-chart circle.sale")).to_have_count(len(sample["items"]))
    expect(page.locator("#sales-chart polygon.band")).to_have_count(1)
    line = page.locator("#sales-chart polyline.model-line").get_attribute("points")
    assert len(line.split()) == 40
    expect(page.locator("#sales-chart .legend")).to_contain_text(f"version {active['version']}")
    expect(page.locator("#sales-note")).to_contain_text(f"All {sample['n_sales']} sales")

    # 3 and 4. The active version's training: its cost curve and the contours of its surface.
    expect(page.locator("#chart-version")).to_have_value(str(active["version"]))
    expect(page.locator("#cost-chart .legend")).to_contain_text(
        f"({len(curve['iterations'])} point"
    )
    expect(page.locator("#descent-chart polygon.contour")).to_have_count(9)

    # 6. The registry: a row per version, with the API's figures.
    rows = page.locator("#registry-rows tr")
    expect(rows).to_have_count(len(models))
    for model in models:
        row = f"#registry-rows tr[data-version='{model['version']}']"
        assert_shows(page, f"{row} td[data-label=RMSE]", model["metrics"]["rmse"])
        expect(page.locator(f"{row} td[data-label=Iterations]")).to_have_text(
            f"{model['iterations']:,}"
        )
        activate = page.get_by_role("button", name=f"Activate version {model['version']}")
        if model["active"]:
            expect(activate).to_be_disabled()
        else:
            expect(activate).to_be_enabled()

    # 8. A point per fitted month in each of the two price charts.
    fitted = [item for item in history if item["silver_price"] is not None]
    assert fitted
    expect(page.locator("#history-silver circle.price-dot")).to_have_count(len(fitted))
    expect(page.locator("#history-gold circle.price-dot")).to_have_count(len(fitted))

    # The page asked only this server, and nothing went wrong in its console.
    assert watched.left_the_machine() == []
    assert watched.requests and all(r.startswith(demo.base_url) for r in watched.requests)
    assert watched.console_errors == []
    assert watched.page_errors == []
    save_screenshot(watched, browser, tmp_path, "dashboard.png")


def test_the_quote_form_gives_the_apis_quote_by_keyboard_alone(
    demo: Server, api: httpx.Client, open_page: OpenPage
) -> None:
    page = open_page(demo).page
    # Every control has a name a screen reader can say.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll("input, select, button")]
            .filter((el) => !(el.labels?.length || el.getAttribute("aria-label")
                              || (el.tagName === "BUTTON" && el.textContent.trim())))
            .map((el) => el.outerHTML)"""
    )
    assert unnamed == []
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "quote-carats":
            break
    else:
        raise AssertionError("Tab never reached the carats field")
    page.keyboard.press("Control+A")
    page.keyboard.type("7.25")
    page.keyboard.press("Enter")
    quote = api.get("/api/v1/predict", params={"carats": 7.25}).json()
    expect(page.locator("#quote-price")).to_have_text(amount(quote["price"]))
    expect(page.locator("#quote-interval")).to_have_text(
        f"95% prediction interval {amount(quote['interval']['lower'])} \N{EN DASH} "
        f"{amount(quote['interval']['upper'])}"
    )


def test_the_store_filter_plots_that_stores_sales(
    demo: Server, api: httpx.Client, open_page: OpenPage
) -> None:
    page = open_page(demo).page
    stores = api.get("/api/v1/stores").json()["items"]
    options = page.locator("#store-filter option")
    expect(options).to_have_count(len(stores) + 1)
    store = stores[1]
    sample = api.get("/api/v1/sales/sample", params={"store_id": store["id"], "size": 1000}).json()
    everyone = api.get("/api/v1/sales/sample", params={"size": 1000}).json()
    assert 0 < sample["n_sales"] < everyone["n_sales"]
    page.select_option("#store-filter", label=store["name"])
    expect(page.locator("#sales-chart circle.sale")).to_have_count(len(sample["items"]))
    expect(page.locator("#sales-note")).to_contain_text(f"All {sample['n_sales']} sales")


def test_without_a_key_the_page_asks_for_one_and_keeps_it_in_the_tab_only(
    demo: Server, api: httpx.Client, open_page: OpenPage
) -> None:
    watched = open_page(demo, key=None)
    page = watched.page
    # Public reads work; the sales are private to the stores.
    expect(page.locator("#model-version")).to_have_text(
        f"v{api.get('/api/v1/prices').json()['model_version']}"
    )
    expect(page.locator("#sales-chart")).to_contain_text("enter the admin key")
    expect(page.locator("#store-control")).to_be_hidden()
    assert watched.console_errors == []

    page.get_by_role("button", name="Enter API key").click()
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.get_by_role("textbox", name="API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#key-state")).to_have_text("Admin key")
    expect(page.locator("#sales-chart circle.sale").first).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem({KEY_SLOT!r})") == ADMIN_KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []

    page.get_by_role("button", name="Forget key").click()
    expect(page.locator("#key-state")).to_have_text("No API key")
    assert page.evaluate(f"sessionStorage.getItem({KEY_SLOT!r})") is None


@pytest.mark.parametrize("viewport", [PHONE, TABLET], ids=["phone", "tablet"])
def test_the_page_fits_narrow_screens(
    viewport: dict, demo: Server, open_page: OpenPage, browser: Browser, tmp_path: Path
) -> None:
    watched = open_page(demo, viewport=viewport)
    page = watched.page
    expect(page.locator("#sales-chart circle.sale").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    # Nothing sticks out of its box either. HTML boxes only: an SVG shape's box ignores the
    # clipping that keeps it inside its chart.
    widest = page.evaluate(
        """() => Math.max(...[...document.querySelectorAll("body *")]
            .filter((e) => !(e instanceof SVGElement) || e.tagName === "svg")
            .map((e) => e.getBoundingClientRect().right))"""
    )
    assert widest <= viewport["width"]
    save_screenshot(watched, browser, tmp_path, f"dashboard-{viewport['width']}px.png")


def test_training_from_the_form_adds_a_version_and_updates_the_charts(
    demo: Server, api: httpx.Client, open_page: OpenPage
) -> None:
    page = open_page(demo).page
    before = api.get("/api/v1/models").json()["items"]
    # The article's plain run: raw carats, 1,000 fixed steps of 0.01, which diverges here.
    page.get_by_label("Scale the feature").uncheck()
    page.get_by_label("Learning rate").fill("0.01")
    page.locator("summary", has_text="More options").click()
    page.get_by_label("Maximum iterations").fill("1000")
    page.get_by_label("Tolerance").fill("0")
    page.get_by_role("button", name="Train", exact=True).click()
    result = page.locator("#train-result")
    expect(result.locator(".message.error")).to_be_visible()
    refused = api.post(
        "/api/v1/train",
        json={
            "learning_rate": 0.01,
            "max_iterations": 1000,
            "tolerance": 0,
            "feature_scaling": False,
        },
    )
    assert refused.status_code == 422
    message = refused.json()["detail"][0]["msg"]
    expect(result.locator(".message.error")).to_contain_text(message)
    assert len(api.get("/api/v1/models").json()["items"]) == len(before)

    # The refusal names a stable rate; the page offers it.
    rate = re.search(r"use ([0-9.e-]+) or 'auto'", message).group(1)
    result.get_by_role("button", name=f"Use {rate}").click()
    expect(page.get_by_label("Learning rate")).to_have_value(rate)
    page.get_by_role("button", name="Train", exact=True).click()
    expect(result.locator(".message.success")).to_contain_text("trained on")
    after = api.get("/api/v1/models").json()["items"]
    assert len(after) == len(before) + 1
    new = after[0]
    assert new["parameters"]["learning_rate"] == float(rate) and new["active"]
    expect(result).to_contain_text(f"Version {new['version']} trained")
    expect(page.locator("#registry-rows tr")).to_have_count(len(after))
    expect(page.locator("#model-version")).to_have_text(f"v{new['version']}")
    assert_shows(page, "#silver-price", new["silver_price"])
    # The training charts now show the new version: its 1,000 iterations and its path.
    expect(page.locator("#chart-version")).to_have_value(str(new["version"]))
    curve = api.get(f"/api/v1/models/{new['version']}/cost-history").json()
    expect(page.locator("#cost-chart .legend")).to_contain_text(
        f"({len(curve['iterations']):,} points)"
    )
    path = page.locator("#descent-chart polyline.path-line").get_attribute("points")
    assert len(path.split()) == len(curve["path"]) == 1000
    expect(page.locator("#sales-chart .legend")).to_contain_text(f"version {new['version']}")
    expect(page.locator("#training-note")).to_contain_text("zig-zags")


def test_activating_an_older_version_changes_the_prices_shown(
    demo: Server, api: httpx.Client, open_page: OpenPage
) -> None:
    page = open_page(demo).page
    models = api.get("/api/v1/models").json()["items"]
    active = next(m for m in models if m["active"])
    older = next(m for m in models if not m["active"])
    assert older["silver_price"] != active["silver_price"]
    assert_shows(page, "#silver-price", active["silver_price"])

    row = page.locator(f"#registry-rows tr[data-version='{older['version']}']")
    row.get_by_role("button", name=f"Activate version {older['version']}").click()
    expect(page.locator("#model-version")).to_have_text(f"v{older['version']}")
    assert api.get("/api/v1/models/active").json()["version"] == older["version"]
    assert_shows(page, "#silver-price", older["silver_price"])
    assert_shows(page, "#gold-price", older["gold_price_per_carat"])
    expect(row.locator(".badge.active")).to_be_visible()

    # The version that was active can go now; the active one cannot.
    expect(row.get_by_role("button", name=f"Delete version {older['version']}")).to_be_disabled()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete version {active['version']}").click()
    expect(page.locator(f"#registry-rows tr[data-version='{active['version']}']")).to_have_count(0)
    assert api.get(f"/api/v1/models/{active['version']}").status_code == 404
