"""Stores and their keys."""

from datetime import datetime

from pydantic import (
    BaseModel,
    Field,
)

from app.fields import Name
from app.schemas.common import Input

# Stores


class StoreCreate(Input):
    name: Name


class StorePublic(BaseModel):
    id: int
    name: str
    created_at: datetime


class StoreCreated(StorePublic):
    api_key: str = Field(description="Shown only in this response; keep it safe.")


class StoreList(BaseModel):
    items: list[StorePublic]
