from fastapi import APIRouter, Response

from app.deps import AdminDep, CallerDep, ReadSession, WriteSession
from app.errors import Forbidden
from app.fields import RowId
from app.orm import Store
from app.routes import JsonRoute
from app.schemas.stores import StoreCreate, StoreCreated, StoreList, StorePublic
from app.services import stores

router = APIRouter(prefix="/api/v1/stores", tags=["stores"], route_class=JsonRoute)


def _with_key(store: Store, key: str) -> StoreCreated:
    return StoreCreated(id=store.id, name=store.name, created_at=store.created_at, api_key=key)


@router.post("", status_code=201, response_model=StoreCreated)
def create_store(body: StoreCreate, _: AdminDep, session: WriteSession) -> StoreCreated:
    """Register a store. Its API key is in this response and nowhere else."""
    return _with_key(*stores.create_store(session, body.name))


@router.get("", response_model=StoreList)
def list_stores(_: AdminDep, session: ReadSession) -> StoreList:
    """All registered stores."""
    return StoreList(
        items=[
            StorePublic.model_validate(s, from_attributes=True) for s in stores.list_stores(session)
        ]
    )


@router.post("/{store_id}/key", response_model=StoreCreated)
def rotate_key(store_id: RowId, caller: CallerDep, session: WriteSession) -> StoreCreated:
    """Replace the store's API key (admin, or the store itself); the new key is shown once."""
    if not caller.is_admin and caller.store_id != store_id:
        raise Forbidden(f"this key belongs to store {caller.store_id}, not store {store_id}")
    return _with_key(*stores.rotate_key(session, store_id))


@router.delete("/{store_id}/key", status_code=204)
def revoke_key(store_id: RowId, _: AdminDep, session: WriteSession) -> Response:
    """Revoke the store's API key at once (admin)."""
    stores.revoke_key(session, store_id)
    return Response(status_code=204)
