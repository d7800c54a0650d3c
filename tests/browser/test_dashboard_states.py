"""The dashboard's states on a fresh, empty service: no sales, no model, a refused training,
sales but still no model, and the service gone."""

from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import OpenPage, start_server
from tests.helpers import ADMIN


def test_empty_failed_and_unreachable_states(open_page: OpenPage, tmp_path: Path) -> None:
    server = start_server(tmp_path, demo=False)
    try:
        page = open_page(server).page
        with server.client(headers=ADMIN) as api:
            no_model = api.get("/api/v1/prices")
            assert no_model.status_code == 409
            expect(page.locator("#no-model")).to_contain_text("No model yet")
            expect(page.locator("#no-model")).to_contain_text(no_model.json()["detail"])
            expect(page.locator("#glance-cards")).to_be_hidden()
            expect(page.locator("#sales-chart")).to_contain_text("No sales yet")
            expect(page.locator("#history-silver")).to_contain_text("No sales yet")
            expect(page.locator("#registry-rows")).to_contain_text("No versions yet")
            expect(page.locator("#cost-chart")).to_contain_text("No model trained yet")

            # A training with nothing to learn from fails, and says why, as the API does.
            page.get_by_role("button", name="Train", exact=True).click()
            failure = page.locator("#train-result .message.error")
            expect(failure).to_be_visible()
            refused = api.post("/api/v1/train", json={})
            assert refused.status_code == 422
            expect(failure).to_have_text(f"Training failed: {refused.json()['detail'][0]['msg']}")

            # Sales arrive: they are plotted, still without a model line.
            store = api.post("/api/v1/stores", json={"name": "Main Street"}).json()
            records = [
                {"store_id": store["id"], "carats": c, "price": 30 + 50 * c} for c in (1, 2, 4)
            ]
            assert api.post("/api/v1/sales/batch", json={"records": records}).status_code == 201
        page.get_by_role("button", name="Refresh").click()
        expect(page.locator("#sales-chart circle.sale")).to_have_count(3)
        expect(page.locator("#sales-chart polyline.model-line")).to_have_count(0)
        expect(page.locator("#sales-note")).to_contain_text("No model yet")
        expect(page.locator("#no-model")).to_be_visible()
        expect(page.locator("#banner")).to_be_hidden()
    finally:
        server.close()

    # The service is gone: the page says so, and offers to try again.
    page.get_by_role("button", name="Refresh").click()
    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("The service is unreachable")
    expect(banner.get_by_role("button", name="Try again")).to_be_visible()
