"""Robustness tests send thousands of requests: keep the client library's per-request log
lines out of the captured output (the servers' own logs are in their log files)."""

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _quiet_http_client() -> Iterator[None]:
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
