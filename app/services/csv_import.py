"""Reading a CSV file of sales with pandas, checking every row before anything is stored."""

import io
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from app.errors import InvalidInput, error_item
from app.schemas import MAX_CARATS, MAX_ID, MAX_PRICE
from app.services.sales import NewSale

COLUMNS = ("carats", "price", "sold_at", "store_id")
REQUIRED = ("carats", "price")
_PRICE = r"^\d{1,9}(\.\d{1,2})?$"
_ID = r"^\d{1,16}$"


def parse_sales_csv(content: bytes) -> list[NewSale]:
    """All rows as sales, or InvalidInput listing every bad row by line number and reason."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput.at(["file"], f"not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise InvalidInput.at(["file"], "contains NUL bytes; not a CSV text file")
    try:
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InvalidInput.at(
            ["file"], f"not a readable CSV ({str(exc).splitlines()[0]})"
        ) from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    unknown = sorted(set(frame.columns) - set(COLUMNS))
    missing = [c for c in REQUIRED if c not in frame.columns]
    if unknown or missing:
        parts = [f"missing column {c!r}" for c in missing]
        parts += [f"unknown column {c!r}" for c in unknown]
        raise InvalidInput.at(
            ["file"], f"{'; '.join(parts)}; expected columns {', '.join(COLUMNS)}"
        )
    if frame.empty:
        raise InvalidInput.at(["file"], "no sales rows after the header")
    return _rows(frame)


def _rows(frame: pd.DataFrame) -> list[NewSale]:
    n = len(frame)
    errors: list[tuple[int, str, str]] = []

    def flag(mask: np.ndarray, field: str, reason: str) -> None:
        errors.extend((int(i), field, reason) for i in np.flatnonzero(mask))

    carats_text = frame["carats"].str.strip()
    carats = pd.to_numeric(carats_text, errors="coerce").to_numpy(dtype=float)
    bad_number = ~np.isfinite(carats)
    flag(bad_number, "carats", "not a finite number")
    flag(
        ~bad_number & ((carats <= 0) | (carats > MAX_CARATS)),
        "carats",
        f"must be > 0 and <= {MAX_CARATS:g}",
    )

    price_text = frame["price"].str.strip()
    price_ok = price_text.str.fullmatch(_PRICE).to_numpy(dtype=bool)
    flag(~price_ok, "price", "must be a positive amount with at most two decimals")
    prices = [Decimal(p) if ok else Decimal(0) for p, ok in zip(price_text, price_ok, strict=True)]
    flag(
        np.array([ok and not (0 < p <= MAX_PRICE) for p, ok in zip(prices, price_ok, strict=True)]),
        "price",
        f"must be > 0 and <= {MAX_PRICE}",
    )

    sold_at: list[datetime | None] = [None] * n
    if "sold_at" in frame.columns:
        text = frame["sold_at"].str.strip()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        present = (text != "").to_numpy()
        earliest = pd.Timestamp("1900-01-01", tz="UTC")
        latest = pd.Timestamp("2100-01-01", tz="UTC")
        valid = (
            parsed.notna().to_numpy()
            & (parsed >= earliest).to_numpy()
            & (parsed < latest).to_numpy()
        )
        flag(present & ~valid, "sold_at", "not an ISO 8601 date in 1900-2099")
        sold_at = [p.to_pydatetime() if ok else None for p, ok in zip(parsed, valid, strict=True)]

    store_ids: list[int | None] = [None] * n
    if "store_id" in frame.columns:
        text = frame["store_id"].str.strip()
        present = (text != "").to_numpy()
        shaped = text.str.fullmatch(_ID).to_numpy(dtype=bool)
        values = [int(t) if ok else 0 for t, ok in zip(text, shaped, strict=True)]
        in_range = np.array([1 <= v <= MAX_ID for v in values], dtype=bool)
        flag(present & ~(shaped & in_range), "store_id", "not a positive 64-bit integer")
        store_ids = [v if ok else None for v, ok in zip(values, shaped & in_range, strict=True)]

    if errors:
        # Line numbers as an editor shows them: the header is line 1.
        raise InvalidInput(
            [error_item(["file", i + 2, field], why) for i, field, why in sorted(errors)]
        )
    return [
        NewSale(carats=float(c), price=p, store_id=s, sold_at=t)
        for c, p, s, t in zip(carats, prices, store_ids, sold_at, strict=True)
    ]
