from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from app import migrate
from app.deps import DatabaseDep
from app.errors import Unavailable
from app.schemas.common import Health

router = APIRouter(prefix="/health", tags=["operations"])


@router.get("/live", response_model=Health)
async def live() -> Health:
    """The process is up."""
    return Health(status="ok")


# A load balancer polls readiness; a few seconds between tries is plenty.
READY_RETRY_AFTER_SECONDS = 5


@router.get("/ready", response_model=Health)
def ready(db: DatabaseDep) -> Health:
    """The database answers and its schema is at the newest migration (503 otherwise)."""
    try:
        # Reading the schema revision is itself the proof that the database answers.
        current = migrate.current_revision(db.engine)
    except SQLAlchemyError:
        raise Unavailable("database unreachable", READY_RETRY_AFTER_SECONDS) from None
    head = migrate.head_revision()
    if current != head:
        raise Unavailable(
            f"schema at {current}, expected {head}: run jewelry-forecast migrate",
            READY_RETRY_AFTER_SECONDS,
        )
    return Health(status="ok")
