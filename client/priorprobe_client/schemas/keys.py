"""API keys: scopes, and the key records the admin API lists (never the key itself, except once)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class KeyScope(StrEnum):
    """Each scope includes the ones before it: ``admin`` can write, ``write`` can read."""

    read = "read"
    write = "write"
    admin = "admin"

    def includes(self, other: "KeyScope") -> bool:
        order = list(KeyScope)
        return order.index(self) >= order.index(other)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@\-]+$")
    scope: KeyScope = KeyScope.read


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str = Field(description="the key's first characters: identifies it in lists and logs")
    scopes: list[KeyScope]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="the secret key; shown only in this response, only a hash is stored")


class ApiKeyList(BaseModel):
    data: list[ApiKeyRead]
    count: int
