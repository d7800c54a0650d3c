"""One request, one transaction: the key is checked in it, writers begin it as writers, and
what must follow a commit waits for the commit."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.db import SQLITE_BEGIN, after_commit, begin_writing
from tests.conftest import ClientWith
from tests.helpers import ADMIN, THREE_SALES, add_sales, new_store


def begins(client: TestClient, send: Any) -> list[str]:
    """How each transaction that ``send`` made began: IMMEDIATE (a writer) or DEFERRED."""
    seen: list[str] = []
    engine = client.app.state.db.engine  # type: ignore[attr-defined]

    def record(connection: Any) -> None:
        seen.append(connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED"))

    event.listen(engine, "begin", record)
    try:
        response = send()
    finally:
        event.remove(engine, "begin", record)
    assert response.status_code < 400, response.text
    return seen


def test_a_write_is_one_transaction_begun_as_a_writer(client: TestClient) -> None:
    _, key = new_store(client)
    sale = {"carats": 1, "price": 1}
    # The key is checked inside the write transaction, not in one of its own.
    assert begins(client, lambda: client.post("/api/v1/sales", json=sale, headers=key)) == [
        "IMMEDIATE"
    ]
    headers = {**key, "Idempotency-Key": "k"}
    assert begins(client, lambda: client.post("/api/v1/sales", json=sale, headers=headers)) == [
        "IMMEDIATE"
    ]


def test_a_read_is_one_transaction_and_a_public_quote_none(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    assert begins(client, lambda: client.get("/api/v1/sales", headers=key)) == ["DEFERRED"]
    client.post("/api/v1/train", headers=ADMIN)
    client.get("/api/v1/predict", params={"carats": 2})  # the worker loads the model once
    assert begins(client, lambda: client.get("/api/v1/predict", params={"carats": 2})) == []


def test_private_reads_check_the_key_in_the_requests_transaction(
    client_with: ClientWith,
) -> None:
    with client_with(PUBLIC_READS=False) as client:
        _, key = new_store(client)
        add_sales(client, key, THREE_SALES)
        client.post("/api/v1/train", headers=ADMIN)
        assert client.get("/api/v1/predict", params={"carats": 2}).status_code == 401
        assert client.get("/api/v1/models").status_code == 401
        client.get("/api/v1/predict", params={"carats": 2}, headers=key)  # loads the model
        assert begins(
            client, lambda: client.get("/api/v1/predict", params={"carats": 2}, headers=key)
        ) == ["DEFERRED"]


def test_a_writer_begins_as_one_or_says_it_is_too_late(client: TestClient) -> None:
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        session.connection()
        with pytest.raises(RuntimeError, match="began before"):
            begin_writing(session)


def test_what_follows_a_commit_waits_for_it(client: TestClient) -> None:
    db = client.app.state.db  # type: ignore[attr-defined]
    done: list[str] = []
    with pytest.raises(ZeroDivisionError), db.session() as session:
        after_commit(session, lambda: done.append("rolled back"))
        session.connection()
        raise ZeroDivisionError
    with db.session() as session:
        after_commit(session, lambda: done.append("committed"))
        session.connection()
    assert done == ["committed"]
