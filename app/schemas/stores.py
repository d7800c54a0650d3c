"""Stores and their keys."""

from datetime import datetime

from pydantic import (
    BaseModel,
    Field,
)

from app.fields import Name
from app.orm import Store
from app.schemas.common import Input

# Stores


class StoreCreate(Input):
    name: Name


class StorePublic(BaseModel):
    id: int
    name: str
    created_at: datetime

    @classmethod
    def from_row(cls, store: Store) -> "StorePublic":
        return cls(id=store.id, name=store.name, created_at=store.created_at)


class StoreCreated(StorePublic):
    api_key: str = Field(description="Shown only in this response; keep it safe.")

    @classmethod
    def with_key(cls, store: Store, api_key: str) -> "StoreCreated":
        return cls(**StorePublic.from_row(store).model_dump(), api_key=api_key)


class StoreList(BaseModel):
    items: list[StorePublic]
