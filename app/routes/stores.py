from fastapi import APIRouter

from app.deps import AdminDep, ReadSession, WriteSession
from app.schemas import StoreCreate, StoreCreated, StoreList, StorePublic
from app.services import stores

router = APIRouter(prefix="/api/v1/stores", tags=["stores"])


@router.post("", status_code=201, response_model=StoreCreated)
def create_store(body: StoreCreate, _: AdminDep, session: WriteSession) -> StoreCreated:
    """Register a store. Its API key is in this response and nowhere else."""
    store, key = stores.create_store(session, body.name)
    return StoreCreated(id=store.id, name=store.name, created_at=store.created_at, api_key=key)


@router.get("", response_model=StoreList)
def list_stores(_: AdminDep, session: ReadSession) -> StoreList:
    """All registered stores."""
    return StoreList(
        items=[
            StorePublic.model_validate(s, from_attributes=True) for s in stores.list_stores(session)
        ]
    )
