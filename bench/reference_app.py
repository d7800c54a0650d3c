"""The bare FastAPI app the service is measured against: what a user would write for each hot
path, with nothing the contract asks for beyond it (no keys, no money strings, no limits).

Served by bench/harness.py as ``uvicorn bench.reference_app:app``. ``BENCH_REFERENCE_DB``
names the database of ``POST /sales``, migrated by the service's migrations with one store.
"""

import math
import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from sqlalchemy import Engine, Table, insert

from bench.databases import engine, table

# A fitted line and what its prediction interval needs: the figures of a typical fit of the
# demo data; the arithmetic per quote is what matters here, not the values.
SILVER, GOLD = 30.0, 50.0
T_QUANTILE, RESIDUAL_SD, N, MEAN_X, SXX = 1.96, 8.0, 300, 12.5, 15_000.0

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/predict")
async def predict(carats: float) -> dict[str, float]:
    return {"carats": carats, "price": SILVER + GOLD * carats}


@app.post("/predict")
async def predict_many(request: Request) -> Response:
    x = np.asarray(orjson.loads(await request.body())["carats"], dtype=np.float64)
    price = SILVER + GOLD * x
    half = T_QUANTILE * RESIDUAL_SD * np.sqrt(1 + 1 / N + (x - MEAN_X) ** 2 / SXX)
    answer = {
        "carats": x,
        "price": np.round(price, 2),
        "lower": np.round(price - half, 2),
        "upper": np.round(price + half, 2),
    }
    return Response(
        orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


class SaleIn(BaseModel):
    carats: float
    price: float
    sold_at: datetime | None = None
    store_id: int = 1


@cache
def _sales() -> tuple[Engine, Table]:
    db = engine(os.environ["BENCH_REFERENCE_DB"])
    return db, table(db, "sales")


@app.post("/sales", status_code=201)
def create_sale(sale: SaleIn) -> dict[str, Any]:
    db, sales = _sales()
    now = datetime.now(UTC)
    row = {
        "store_id": sale.store_id,
        "carats": sale.carats,
        "price_cents": math.floor(sale.price * 100 + 0.5),
        "sold_at": sale.sold_at or now,
        "created_at": now,
    }
    with db.begin() as conn:
        sale_id = conn.execute(insert(sales).values(row).returning(sales.c.id)).scalar_one()
    return {"id": sale_id, **row}
