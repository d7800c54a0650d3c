"""The dashboard's files: whole, with the page's headers, whatever Range a client sends."""

import pytest
from fastapi.testclient import TestClient

from app.routes.web import HEADERS, WEB_DIR


@pytest.mark.parametrize("byte_range", ["bytes=999999-", "garbage", "bytes=5-1", "bytes=0-3"])
def test_a_range_is_ignored_and_the_file_comes_whole(client: TestClient, byte_range: str) -> None:
    response = client.get("/static/app.js", headers={"Range": byte_range})
    assert response.status_code == 200
    assert response.content == (WEB_DIR / "app.js").read_bytes()
    assert "accept-ranges" not in response.headers
    for name, value in HEADERS.items():
        assert response.headers[name] == value
