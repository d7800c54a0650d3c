from fastapi import APIRouter, Response

from app.deps import WRITES, AdminDep, CallerDep, SessionDep
from app.fields import RowId
from app.routes import JsonRoute
from app.schemas.stores import StoreCreate, StoreCreated, StoreList, StorePublic
from app.services import stores

router = APIRouter(prefix="/api/v1/stores", tags=["stores"], route_class=JsonRoute)


@router.post("", status_code=201, response_model=StoreCreated, dependencies=[WRITES])
def create_store(body: StoreCreate, _: AdminDep, session: SessionDep) -> StoreCreated:
    """Register a store. Its API key is in this response and nowhere else."""
    return StoreCreated.with_key(*stores.create_store(session, body.name))


@router.get("", response_model=StoreList)
def list_stores(_: AdminDep, session: SessionDep) -> StoreList:
    """All registered stores."""
    return StoreList(items=[StorePublic.from_row(s) for s in stores.list_stores(session)])


@router.post("/{store_id}/key", response_model=StoreCreated, dependencies=[WRITES])
def rotate_key(store_id: RowId, caller: CallerDep, session: SessionDep) -> StoreCreated:
    """Replace the store's API key (admin, or the store itself); the new key is shown once."""
    caller.check_store(store_id)
    return StoreCreated.with_key(*stores.rotate_key(session, store_id))


@router.delete("/{store_id}/key", status_code=204, dependencies=[WRITES])
def revoke_key(store_id: RowId, _: AdminDep, session: SessionDep) -> Response:
    """Revoke the store's API key at once (admin)."""
    stores.revoke_key(session, store_id)
    return Response(status_code=204)
