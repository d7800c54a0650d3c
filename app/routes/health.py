from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from app import migrate
from app.deps import DatabaseDep
from app.schemas.common import Health

router = APIRouter(prefix="/health", tags=["operations"])


@router.get("/live", response_model=Health)
async def live() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": Health}})
def ready(db: DatabaseDep) -> Health | JSONResponse:
    """The database answers and its schema is at the newest migration."""
    try:
        # Reading the schema revision is itself the proof that the database answers.
        current = migrate.current_revision(db.engine)
    except SQLAlchemyError:
        return _unavailable("database unreachable")
    head = migrate.head_revision()
    if current != head:
        return _unavailable(f"schema at {current}, expected {head}: run jewelry-forecast migrate")
    return Health(status="ok")


def _unavailable(detail: str) -> JSONResponse:
    body = Health(status="unavailable", detail=detail).model_dump()
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
