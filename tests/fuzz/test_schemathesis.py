"""Property-based fuzzing of every operation in the app's own OpenAPI schema, in process.

All of schemathesis's checks, positive and negative data, a fixed seed and a bounded number of
examples per operation so that CI stays fast. `make fuzz` runs a longer campaign on a live
server.
"""

import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.config import Settings
from app.main import create_app, prepare_database
from app.schemas import TrainRequest
from app.security import Caller
from app.services import sales, stores, training
from app.services.sales import NewSale
from tests.helpers import ADMIN_KEY

DATA = Path(tempfile.mkdtemp(prefix="jewelry-fuzz-"))
SETTINGS = Settings(DATABASE_URL=f"sqlite:///{DATA / 'fuzz.db'}", ADMIN_API_KEY=ADMIN_KEY)
APP = create_app(SETTINGS)


def _seed_database() -> str:
    """A store, sales and an active model, so that operations get past 'nothing here yet'."""
    db = APP.state.db
    prepare_database(db, SETTINGS)
    with db.session(write=True) as session:
        store, key = stores.create_store(session, "Fuzz")
        rows = [
            NewSale(carats=c, price=Decimal(p), store_id=store.id)
            for c, p in ((1, "110"), (2, "150"), (3, "191.5"))
        ]
        sales.record_sales(session, Caller("admin"), rows)
    training.train(db, TrainRequest(), lease_ttl=timedelta(minutes=5))
    return key


STORE_KEY = _seed_database()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=25, deterministic=True
)


# Whether these succeed depends on the stored data, not on the request's shape: a training
# filter that matches no sales, or a file whose rows are not sales, is a correct 422.
DATA_DEPENDENT = {("POST", "/api/v1/train"), ("POST", "/api/v1/sales/import")}


@schema.parametrize()
@seed(20261126)
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_and_never_fails_with_5xx(case: schemathesis.Case) -> None:
    # Sales are a store's to write; the admin must name the store, which the schema can't say.
    key = STORE_KEY if case.operation.path.startswith("/api/v1/sales") else ADMIN_KEY
    case.headers = {**(case.headers or {}), "X-API-Key": key}
    excluded = (
        [positive_data_acceptance]
        if (case.operation.method.upper(), case.operation.path) in DATA_DEPENDENT
        else []
    )
    case.call_and_validate(excluded_checks=excluded)
