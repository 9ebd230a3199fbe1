from __future__ import annotations

from pydantic import BaseModel


class ProbeInfo(BaseModel):
    name: str
    version: str
    summary: str
    paper: str
    requires_task: bool
    params_schema: dict
    result_schema: dict


class ProbeList(BaseModel):
    data: list[ProbeInfo]
    count: int


class Health(BaseModel):
    status: str  # "ok" or "degraded"
    mode: str  # "embedded" or "distributed"
    database: str
    broker: str
