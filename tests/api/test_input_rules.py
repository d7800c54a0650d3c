"""The rules for values a client writes, judged on the text as written: prices exact to the
cent, integers in query strings and paths in plain digits, bodies json cannot read, store
names that are really printable."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.fields import PRICE_RULE
from tests.helpers import ADMIN, THREE_SALES, add_sales, new_store

JSON = {"Content-Type": "application/json"}


def post_sale(client: TestClient, key: dict[str, str], raw: str) -> Any:
    return client.post("/api/v1/sales", content=raw, headers={**key, **JSON})


def detail(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    return error  # type: ignore[no-any-return]


# Prices: the JSON literal, not the float it rounds to.


@pytest.mark.parametrize(
    "price",
    [
        "99999999.989999999",
        "1.10000000000000000001",
        "0.0100000000000000001",
        "250.10000000000001",
        "10.005",
        "1e-400",
        '"10.005"',
        '"1.10000000000000000001"',
    ],
)
def test_a_price_with_more_than_two_decimals_is_refused_as_written(
    client: TestClient, price: str
) -> None:
    _, key = new_store(client)
    error = detail(post_sale(client, key, f'{{"carats": 1, "price": {price}}}'))
    assert error["loc"] == ["body", "price"]
    assert error["msg"] == f"Value error, must be {PRICE_RULE}"
    batch = f'{{"records": [{{"carats": 1, "price": 1}}, {{"carats": 1, "price": {price}}}]}}'
    response = client.post("/api/v1/sales/batch", content=batch, headers={**key, **JSON})
    assert detail(response)["loc"] == ["body", "records", 1, "price"]
    assert client.get("/api/v1/sales", headers=key).json()["items"] == []


@pytest.mark.parametrize(
    ("price", "stored"),
    [
        ("12.340", "12.34"),
        ('"12.340"', "12.34"),
        ('"7.5000"', "7.50"),
        ("99999999.99", "99999999.99"),
        ("99999999.990000", "99999999.99"),
        ("2.5e2", "250.00"),
        ("1.25E1", "12.50"),
        ("0.01", "0.01"),
        ("42", "42.00"),
    ],
)
def test_trailing_zeros_after_the_cents_are_fine_in_numbers_and_strings(
    client: TestClient, price: str, stored: str
) -> None:
    _, key = new_store(client)
    response = post_sale(client, key, f'{{"carats": 1, "price": {price}}}')
    assert response.status_code == 201, response.text
    assert response.json()["price"] == stored


@pytest.mark.parametrize("price", ["100000000", "1e8", "99999999.991e1"])
def test_a_price_over_the_largest_names_the_largest_as_written(
    client: TestClient, price: str
) -> None:
    _, key = new_store(client)
    response = post_sale(client, key, f'{{"carats": 1, "price": {price}}}')
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"] == "Input should be less than or equal to 99999999.99"
    assert error["type"] == "less_than_equal"


@pytest.mark.parametrize("carats", ["true", '"1.5"', "NaN", "Infinity", "1e400", "null"])
def test_carats_in_a_body_are_json_numbers_only(client: TestClient, carats: str) -> None:
    _, key = new_store(client)
    error = detail(post_sale(client, key, f'{{"carats": {carats}, "price": 10}}'))
    assert error["loc"] == ["body", "carats"]
    predict = client.post("/api/v1/predict", content=f'{{"carats": [{carats}]}}', headers=JSON)
    assert detail(predict)["loc"] == ["body", "carats", 0]


@pytest.mark.parametrize(("carats", "stored"), [("2", 2.0), ("1.5", 1.5), ("0.1", 0.1)])
def test_carats_are_the_float_the_literal_names(
    client: TestClient, carats: str, stored: float
) -> None:
    _, key = new_store(client)
    response = post_sale(client, key, f'{{"carats": {carats}, "price": 10}}')
    assert response.status_code == 201, response.text
    assert response.json()["carats"] == stored


def test_training_numbers_take_decimals_and_integers_as_before(client: TestClient) -> None:
    _, key = new_store(client)
    add_sales(client, key, THREE_SALES)
    body = '{"learning_rate": 0.05, "tolerance": 1e-9, "max_iterations": 2.0e3}'
    response = client.post("/api/v1/train", content=body, headers={**ADMIN, **JSON})
    assert response.status_code == 201, response.text
    assert response.json()["parameters"]["max_iterations"] == 2000
    for bad in ('{"max_iterations": 1.5}', '{"learning_rate": true}', '{"tolerance": "1"}'):
        refused = client.post("/api/v1/train", content=bad, headers={**ADMIN, **JSON})
        assert refused.status_code == 422, bad


def test_the_schema_states_the_bounds_of_every_parameter_in_json_schema_words(
    client: TestClient,
) -> None:
    """A validator in front of a type's bounds must not turn minimum into pydantic's "ge"."""

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for value in node.values() for k in keys(value)}
        if isinstance(node, list):
            return {k for value in node for k in keys(value)}
        return set()

    parameters = [
        parameter
        for operations in client.get("/openapi.json").json()["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
    ]
    assert not keys(parameters) & {"ge", "gt", "le", "lt"}
    version = client.get("/openapi.json").json()["paths"]["/api/v1/models/{version}"]["get"]
    assert version["parameters"][0]["schema"]["minimum"] == 1


# Bodies json cannot read: the message says what is wrong, and where.


def test_a_number_of_thousands_of_digits_is_too_long(client: TestClient) -> None:
    _, key = new_store(client)
    for number in ("9" * 5000, "1e999999999"):
        error = detail(post_sale(client, key, f'{{"carats": 1, "price": 1, "store_id": {number}}}'))
        assert error["msg"].endswith("number too long (more than 4300 digits)")
    error = detail(post_sale(client, key, '{"carats": 1, "price": 1, "store_id": 1e30}'))
    assert error["msg"] == "Input should be less than or equal to 9007199254740991"
    error = detail(post_sale(client, key, '{"carats": 1, "price": ' + "9" * 5000 + "}"))
    assert error["type"] == "json_invalid"
    assert error["msg"] == "not valid JSON: number too long (more than 4300 digits)"
    error = detail(post_sale(client, key, '{"carats": 1, "price": 1e9999999999999999999}'))
    assert error["msg"] == "not valid JSON: number out of range (exponent too large)"


@pytest.mark.parametrize("control", ["\x00", "\x1f", "\n"])
def test_a_control_character_in_a_string_is_named_with_its_place(
    client: TestClient, control: str
) -> None:
    _, key = new_store(client)
    error = detail(post_sale(client, key, f'{{"carats": 1,\n "price": "1{control}"}}'))
    assert error["type"] == "json_invalid"
    assert error["loc"] == ["body"]
    assert error["msg"] == "not valid JSON: control character in a string at line 2 column 13"


def test_other_syntax_errors_say_what_and_where(client: TestClient) -> None:
    _, key = new_store(client)
    error = detail(post_sale(client, key, '{"carats": 1, "price": }'))
    assert error["msg"] == "not valid JSON: expecting value at line 1 column 24"
    error = detail(post_sale(client, key, '{"carats": 1} x'))
    assert error["msg"] == "not valid JSON: extra data at line 1 column 15"


@pytest.mark.parametrize(
    ("sold_at", "reason"),
    [
        ("2026-01-01T24:00:00Z", "the hour must be 00-23"),
        ("2026-01-01T23:60:00Z", "the minute must be 00-59"),
        ("2026-01-01T23:59:60Z", "the second must be 00-59"),
        ("2026-13-01T00:00:00Z", "the month must be 01-12"),
        ("2026-02-29T00:00:00Z", "the day must be 01-28 in that month"),
        ("2026-04-00T00:00:00Z", "the day must be 01-30 in that month"),
        ("2026-01-01T00:00:00+24:00", "the offset's hours must be 00-23"),
        ("2026-01-01T00:00:00-01:60", "the offset's minutes must be 00-59"),
    ],
)
def test_a_time_out_of_range_says_which_part(client: TestClient, sold_at: str, reason: str) -> None:
    _, key = new_store(client)
    raw = f'{{"carats": 1, "price": 1, "sold_at": "{sold_at}"}}'
    error = detail(post_sale(client, key, raw))
    assert error["loc"] == ["body", "sold_at"]
    assert error["msg"].endswith(f": {reason}")
    query = client.get("/api/v1/sales", params={"sold_since": sold_at}, headers=key)
    assert detail(query)["msg"].endswith(f": {reason}")
    upload = f"carats,price,sold_at\n1,1,{sold_at}\n".encode()
    imported = client.post("/api/v1/sales/import", files={"file": ("s.csv", upload)}, headers=key)
    assert detail(imported)["msg"].endswith(f": {reason}")


def test_a_leap_day_is_a_day(client: TestClient) -> None:
    _, key = new_store(client)
    raw = '{"carats": 1, "price": 1, "sold_at": "2028-02-29T23:59:59Z"}'
    response = post_sale(client, key, raw)
    assert response.status_code == 201, response.text


# Integers in query strings and paths: plain ASCII digits.

WHOLE = "must be a whole number, written as 12"


@pytest.mark.parametrize("text", ["1_0", " 1 ", "+1", "1.0", "0001", "1e1", "\u0661"])
def test_an_integer_query_or_path_parameter_is_plain_digits(client: TestClient, text: str) -> None:
    store_id, _ = new_store(client)
    assert store_id == 1
    for path, loc in [
        ("/api/v1/sales", ["query", "store_id"]),
        ("/api/v1/prices/history", ["query", "store_id"]),
    ]:
        error = detail(client.get(path, params={"store_id": text}, headers=ADMIN))
        assert error["loc"] == loc
        assert error["msg"] == f"Value error, {WHOLE}"
    for name, path in [("limit", "/api/v1/sales"), ("size", "/api/v1/sales/sample")]:
        error = detail(client.get(path, params={name: text}, headers=ADMIN))
        assert error["loc"] == ["query", name]
        assert error["msg"] == f"Value error, {WHOLE}"
    rotate = client.post(f"/api/v1/stores/{text}/key", headers=ADMIN)
    assert detail(rotate)["loc"] == ["path", "store_id"]
    assert client.get("/api/v1/sales", params={"store_id": "1"}, headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/models/{}"),
        ("GET", "/api/v1/models/{}/cost-history"),
        ("POST", "/api/v1/models/{}/activate"),
        ("DELETE", "/api/v1/models/{}"),
    ],
)
@pytest.mark.parametrize("version", ["-1", "0", "1_0", "0001", "x"])
def test_a_model_version_that_cannot_be_one_is_422_naming_it(
    client: TestClient, method: str, path: str, version: str
) -> None:
    response = client.request(method, path.format(version), headers=ADMIN)
    assert detail(response)["loc"] == ["path", "version"]


def test_a_model_version_that_could_be_one_but_is_not_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/models/7/cost-history")
    assert response.status_code == 404


# Store names: printable, one kind of space.


@pytest.mark.parametrize(
    ("name", "msg"),
    [
        ("Aurum &\u00a0Co", "must use the space U+0020, not U+00A0"),
        ("Aurum\u2003Co", "must use the space U+0020, not U+2003"),
        ("Aurum\u3000Co", "must use the space U+0020, not U+3000"),
        ("Aurum\ufffe", "must not hold U+FFFE: unassigned or a noncharacter"),
        ("Aurum\U000e0080", "must not hold U+E0080: unassigned or a noncharacter"),
        ("Aurum\ue000", "must not hold U+E000: a private-use character"),
        ("\u0301Aurum", "must not start with a combining mark (U+0301)"),
        ("\u20ddAurum", "must not start with a combining mark (U+20DD)"),
        ("Aurum\u200b", "must not hold U+200B: a control or format character"),
        ("Aurum\u2028Co", "must not hold U+2028: a line or paragraph separator"),
        (" Aurum", "must not start or end with a space"),
        ("Aurum ", "must not start or end with a space"),
    ],
)
def test_store_names_are_really_printable(client: TestClient, name: str, msg: str) -> None:
    response = client.post("/api/v1/stores", json={"name": name}, headers=ADMIN)
    error = detail(response)
    assert error["loc"] == ["body", "name"]
    assert error["msg"] == f"Value error, {msg}"


@pytest.mark.parametrize(
    "name", ["Aurum & Co", "Cafe\u0301 Lune", "\u00c5ngstr\u00f6m", "\u91d1 \u5e97"]
)
def test_printable_names_with_marks_after_a_letter_are_fine(client: TestClient, name: str) -> None:
    response = client.post("/api/v1/stores", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text


def test_the_active_version_path_keeps_its_405_for_other_methods(client: TestClient) -> None:
    response = client.delete("/api/v1/models/active", headers=ADMIN)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
