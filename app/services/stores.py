"""Registering stores and handing out their keys."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.orm import Store
from app.security import hash_key, new_key


def create_store(session: Session, name: str) -> tuple[Store, str]:
    """Create a store; returns it with its API key, which is not kept in clear anywhere."""
    if session.scalar(select(Store.id).where(Store.name == name)) is not None:
        raise Conflict(f"name: a store named {name!r} already exists")
    key = new_key("store")
    store = Store(name=name, api_key_hash=hash_key(key))
    session.add(store)
    session.flush()
    return store, key


def list_stores(session: Session) -> list[Store]:
    return list(session.scalars(select(Store).order_by(Store.id)))


def get_store(session: Session, store_id: int) -> Store:
    store = session.get(Store, store_id)
    if store is None:
        raise NotFound(f"no store with id {store_id}")
    return store


def rotate_key(session: Session, store_id: int) -> tuple[Store, str]:
    """Give the store a new key; the old one stops working when this commits."""
    store = get_store(session, store_id)
    key = new_key("store")
    store.api_key_hash = hash_key(key)
    session.flush()
    return store, key


def revoke_key(session: Session, store_id: int) -> None:
    """Leave the store without a key until one is rotated in."""
    get_store(session, store_id).api_key_hash = None
    session.flush()
