"""Importing sales from a CSV file: every line checked, every sale stored or none."""

import io

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ClientWith
from tests.helpers import ADMIN, count_sales, new_store


def upload(client: TestClient, headers: dict[str, str], content: bytes) -> httpx.Response:
    files = {"file": ("sales.csv", io.BytesIO(content), "text/csv")}
    return client.post("/api/v1/sales/import", files=files, headers=headers)


def locs(response: httpx.Response) -> list[list[object]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


def test_csv_import_stores_every_row(client: TestClient) -> None:
    store_id, key = new_store(client)
    text = (
        "carats,price,sold_at\n"
        "1.5,150.10,2026-01-02T03:04:05Z\n"
        "2,250,\n"
        "3.25,300.5,2026-02-01T00:00:00+01:00\n"
    )
    response = upload(client, key, text.encode())
    assert response.status_code == 201, response.text
    assert response.json() == {"count": 3}
    items = client.get("/api/v1/sales", headers=key).json()["items"]
    assert [(s["carats"], s["price"], s["store_id"]) for s in items] == [
        (1.5, "150.10", store_id),
        (2.0, "250.00", store_id),
        (3.25, "300.50", store_id),
    ]
    assert items[0]["sold_at"] == "2026-01-02T03:04:05Z"
    assert items[2]["sold_at"] == "2026-01-31T23:00:00Z"


def test_csv_import_lists_every_bad_line_and_stores_nothing(client: TestClient) -> None:
    _, key = new_store(client)
    text = "carats,price\n1,100\nabc,100\n2,-5\n3,10.999\n0,1\n4,40\n"
    response = upload(client, key, text.encode())
    assert locs(response) == [
        ["file", 3, "carats"],
        ["file", 4, "price"],
        ["file", 5, "price"],
        ["file", 6, "carats"],
    ]
    assert count_sales(client) == 0


def test_a_line_with_more_or_fewer_fields_than_the_header_is_refused(client: TestClient) -> None:
    # pandas took the two extra leading fields as an index: carats 7, price 8.00, a 201.
    _, key = new_store(client)
    text = "carats,price\n1.5,100.00,7,8.00\n2,200\n3\n"
    response = upload(client, key, text.encode())
    assert response.json()["detail"] == [
        {
            "loc": ["file", 2, 3],
            "msg": "the line has 4 fields; the header names 2 columns",
            "type": "extra_forbidden",
        },
        {
            "loc": ["file", 4, "price"],
            "msg": "the line has 1 field; the header names 2 columns",
            "type": "missing",
        },
    ]
    assert count_sales(client) == 0


@pytest.mark.parametrize(
    ("header", "where"),
    [("carats,price,Carats", 3), ("carats, PRICE ,price", 3), ("price,carats,carats ", 3)],
)
def test_columns_that_differ_only_in_case_or_spaces_are_duplicates(
    client: TestClient, header: str, where: int
) -> None:
    # A 500 and a reset connection before.
    _, key = new_store(client)
    response = upload(client, key, f"{header}\n1,2,3\n".encode())
    assert locs(response) == [["file", 1, where]]
    assert "a second time" in response.json()["detail"][0]["msg"]
    assert count_sales(client) == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        # Digits are ASCII digits, as in JSON.
        ("carats", "\uff11"),
        ("price", "\uff11\uff10\uff10"),
        ("sold_at", "\uff12026-11-01T09:00:00Z"),
        ("store_id", "\uff11"),
        # Times are RFC 3339 date-times with an offset, nothing pandas would guess at.
        ("sold_at", "now"),
        ("sold_at", "today"),
        ("sold_at", "yesterday"),
        ("sold_at", "2026-11-01"),
        ("sold_at", "2026-11-01 09:00:00Z"),
        ("sold_at", "2026-11-01T09:00:00"),
        ("sold_at", "11/01/2026"),
        ("sold_at", "1785000000"),
        ("sold_at", "1899-12-31T23:59:59Z"),
        ("sold_at", "2099-12-31T23:30:00-01:00"),
        ("sold_at", "2026-02-30T00:00:00Z"),
        # Carats: a plain decimal number from 0.001 to 10,000.
        ("carats", "0.0009"),
        ("carats", "10000.001"),
        ("carats", "1e2"),
        ("carats", "inf"),
        ("carats", "nan"),
        ("carats", "-1"),
        ("carats", "+1"),
        ("carats", "1_000"),
        ("carats", ".5"),
        ("carats", ""),
        # Prices: positive, at most two decimals, up to 99999999.99.
        ("price", "1e3"),
        ("price", "0"),
        ("price", "0.00"),
        ("price", "100000000"),
        ("price", "1,000.00"),
        ("price", "$5"),
        ("price", ""),
        # Store ids: positive integers up to 2^53 - 1.
        ("store_id", "0"),
        ("store_id", "1.0"),
        ("store_id", "-1"),
        ("store_id", "9007199254740992"),
    ],
)
def test_values_follow_the_json_rules(client: TestClient, column: str, value: str) -> None:
    store_id, key = new_store(client)
    good = {"carats": "1.5", "price": "100.00", "sold_at": "", "store_id": str(store_id)}
    row = {**good, column: value}
    text = "carats,price,sold_at,store_id\n" + ",".join(f'"{v}"' for v in row.values()) + "\n"
    response = upload(client, key, text.encode())
    assert locs(response) == [["file", 2, column]]
    assert count_sales(client) == 0


@pytest.mark.parametrize(
    ("column", "value", "stored"),
    [
        ("carats", "0.001", 0.001),
        ("carats", "10000", 10000.0),
        ("carats", "007.50", 7.5),
        ("price", "0.01", "0.01"),
        ("price", "99999999.99", "99999999.99"),
        ("price", "5.5", "5.50"),
        ("sold_at", "2026-11-20t14:30:00z", "2026-11-20T14:30:00Z"),
        ("sold_at", "2026-11-20T14:30:00.123456789+05:30", "2026-11-20T09:00:00.123456Z"),
        ("sold_at", "1900-01-01T00:00:00Z", "1900-01-01T00:00:00Z"),
        ("sold_at", "2099-12-31T23:59:59Z", "2099-12-31T23:59:59Z"),
    ],
)
def test_values_at_the_edges_of_the_rules_are_stored(
    client: TestClient, column: str, value: str, stored: object
) -> None:
    _, key = new_store(client)
    row = {"carats": "1.5", "price": "100.00", "sold_at": "", column: value}
    text = "carats,price,sold_at\n" + ",".join(row.values()) + "\n"
    response = upload(client, key, text.encode())
    assert response.status_code == 201, response.text
    [sale] = client.get("/api/v1/sales", headers=key).json()["items"]
    assert sale[column] == stored


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-20T14:30:00Z",
        "2026-11-20T14:30:00.5-03:00",
        "2026-11-20T14:30:00+23:59",
        "2026-11-20T14:30:60Z",
        "2026-13-01T00:00:00Z",
        "2026-11-20",
        "2100-01-01T00:00:00Z",
        "1900-01-01T00:30:00+01:00",
    ],
)
def test_a_time_is_accepted_in_a_file_exactly_when_json_accepts_it(
    client: TestClient, value: str
) -> None:
    _, key = new_store(client)
    as_json = client.post(
        "/api/v1/sales", json={"carats": 1, "price": "1.00", "sold_at": value}, headers=key
    )
    as_csv = upload(client, key, f"carats,price,sold_at\n1,1.00,{value}\n".encode())
    assert (as_csv.status_code, as_json.status_code) in ((201, 201), (422, 422))
    if as_json.status_code == 201:
        items = client.get("/api/v1/sales", headers=key).json()["items"]
        assert items[0]["sold_at"] == items[1]["sold_at"]


def test_errors_are_listed_up_to_a_cap_and_the_rest_counted(client: TestClient) -> None:
    _, key = new_store(client)
    text = "carats,price\n" + "x,1\n" * 1500 + "1,y\n" * 10
    detail = upload(client, key, text.encode()).json()["detail"]
    assert len(detail) == 1001
    assert detail[0]["loc"] == ["file", 2, "carats"]
    assert detail[999]["loc"] == ["file", 1001, "carats"]
    assert detail[1000]["loc"] == ["file"]
    assert detail[1000]["type"] == "too_many_errors"
    assert "510 more" in detail[1000]["msg"]
    assert count_sales(client) == 0


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbfcarats,price,sold_at\n1.5,180.00,2026-11-01T09:00:00Z\n4,260.50,\n",
        b"carats,price,sold_at\r\n1.5,180.00,2026-11-01T09:00:00Z\r\n4,260.50,\r\n",
        b'"carats","price","sold_at"\n"1.5","180.00","2026-11-01T09:00:00Z"\n"4","260.50",""\n',
        b" Price ,CARATS,Sold_At\n180.00, 1.5 ,2026-11-01T09:00:00Z\n\n260.50,4,\n\n",
        b"carats,price,sold_at\n1.5,180.00,2026-11-01T09:00:00Z\n4,260.50,",
    ],
    ids=["bom", "crlf", "quoted", "any-order-case-spaces-blank-lines", "no-final-newline"],
)
def test_common_csv_dialects_are_read(client: TestClient, content: bytes) -> None:
    _, key = new_store(client)
    response = upload(client, key, content)
    assert response.status_code == 201, response.text
    items = client.get("/api/v1/sales", headers=key).json()["items"]
    assert [(s["carats"], s["price"]) for s in items] == [(1.5, "180.00"), (4.0, "260.50")]
    assert items[0]["sold_at"] == "2026-11-01T09:00:00Z"


def test_a_bad_line_after_many_stored_chunks_rolls_them_all_back(client: TestClient) -> None:
    _, key = new_store(client)
    good = "".join(f"{1 + n % 100 / 10:.1f},{100 + n % 500}.00\n" for n in range(12_000))
    bad = upload(client, key, f"carats,price\n{good}1,abc\n{good}".encode())
    assert locs(bad) == [["file", 12_002, "price"]]
    assert count_sales(client) == 0
    stored = upload(client, key, f"carats,price\n{good}".encode())
    assert stored.json() == {"count": 12_000}
    assert count_sales(client) == 12_000


def test_csv_import_with_admin_key_needs_known_store_ids(client: TestClient) -> None:
    store_id, _ = new_store(client)
    text = f"carats,price,store_id\n1,100,{store_id}\n2,200,999\n3,300,\n"
    response = upload(client, ADMIN, text.encode())
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["file", 3, "store_id"], "msg": "no store with id 999", "type": "value_error"},
        {
            "loc": ["file", 4, "store_id"],
            "msg": "required when using the admin key",
            "type": "missing",
        },
    ]
    assert count_sales(client) == 0


def test_a_store_key_may_only_import_its_own_sales(client: TestClient) -> None:
    store_id, key = new_store(client)
    other_id, _ = new_store(client, "Other")
    text = f"carats,price,store_id\n1,100,{store_id}\n2,200,{other_id}\n"
    response = upload(client, key, text.encode())
    assert response.status_code == 403
    assert count_sales(client) == 0


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b"", ["file", 1, 1]),
        (b"\n1,2\n", ["file", 1, 1]),
        (b"carats,price\n", ["file", 2, 1]),
        (b"carats,price\n\n\n", ["file", 2, 1]),
        (b"weight,price\n1,2\n", ["file", 1, 1]),
        (b"carats\n1\n", ["file", 1, "price"]),
        (b"carats,price,\n1,2,\n", ["file", 1, 3]),
        (b'carats,price\n"1,2\n', ["file", 2, 1]),
        (b'carats,price\n"1"0,2\n', ["file", 2, 1]),
        (b"carats,price\n1,2\x00\n", ["file", 2, "price"]),
        ("carats,price\n1,\u00e9\n".encode("latin-1"), ["file", 2, "price"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ["file", 1, 1]),
        (b"carats,price\n1," + b"9" * 5000 + b"\n", ["file", 2, 1]),
    ],
    ids=[
        "empty",
        "blank-header",
        "header-only",
        "header-and-blank-lines",
        "unknown-column",
        "missing-column",
        "unnamed-column",
        "unclosed-quote",
        "text-after-quote",
        "nul",
        "latin-1",
        "png",
        "line-too-long",
    ],
)
def test_a_file_that_is_not_a_sales_csv_is_a_422_naming_the_place(
    client: TestClient, content: bytes, loc: list[object]
) -> None:
    _, key = new_store(client)
    response = upload(client, key, content)
    assert locs(response)[0] == loc
    assert count_sales(client) == 0


def test_a_quoting_error_does_not_hide_the_lines_after_it(client: TestClient) -> None:
    _, key = new_store(client)
    text = 'carats,price\n"1"0,2\n1,2\n"2,3\n3,4\nx,5\n'
    assert locs(upload(client, key, text.encode())) == [
        ["file", 2, 1],
        ["file", 4, 1],
        ["file", 6, "carats"],
    ]


def test_the_schema_declares_the_multipart_file(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/sales/import"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"]
    assert schema["properties"]["file"]["format"] == "binary"
    assert "429" in operation["responses"]


def test_an_import_frees_its_slot_however_it_ends(client_with: ClientWith) -> None:
    with client_with(MAX_CONCURRENT_IMPORTS=1, MAX_UPLOAD_BYTES=2048) as client:
        _, key = new_store(client)
        assert upload(client, key, b"carats,price\n1,abc\n").status_code == 422
        assert upload(client, key, b"carats,price\n" + b"1,2\n" * 1000).status_code == 413
        assert upload(client, {"X-API-Key": "wrong"}, b"carats,price\n1,2\n").status_code == 401
        assert client.post("/api/v1/sales/import", data={"x": "1"}, headers=key).status_code == 422
        assert upload(client, key, b"carats,price\n1,2\n").status_code == 201
        assert "jewelry_csv_imports_running 0.0" in client.get("/metrics").text


@pytest.mark.parametrize(
    ("files", "data"),
    [
        ({"file": ("a.csv", b"carats,price\n1,2\n")}, {"note": "x" * 2_000_000}),
        ({"file": ("a.csv", b"1"), "more": ("b.csv", b"2")}, {}),
        ({}, {f"field{n}": "x" for n in range(5)}),
    ],
    ids=["big-text-field", "two-files", "many-fields"],
)
def test_form_fields_besides_the_file_are_not_held_in_memory(
    client: TestClient, files: dict[str, object], data: dict[str, str]
) -> None:
    _, key = new_store(client)
    response = client.post("/api/v1/sales/import", files=files, data=data, headers=key)
    assert response.status_code == 400, response.text
    assert count_sales(client) == 0


def test_an_upload_without_the_file_field_is_a_422(client: TestClient) -> None:
    _, key = new_store(client)
    response = client.post("/api/v1/sales/import", data={"other": "x"}, headers=key)
    assert locs(response) == [["body", "file"]]
