"""The probe catalogue: each probe's summary and its params as JSON schema."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.auth import ReadAccess
from app.schemas.probes import ProbeInfo, ProbeList
from workers.probes.registry import PROBES

router = APIRouter(prefix="/probes", tags=["probes"])


@router.get("", response_model=ProbeList, operation_id="list_probes")
def list_probes(_: ReadAccess) -> ProbeList:
    data = [
        ProbeInfo(
            name=name,
            version=probe.version,
            summary=probe.summary,
            paper=probe.paper,
            requires_task=probe.requires_task,
            params_schema=probe.Params.model_json_schema(),
            result_schema=probe.Result.model_json_schema(),
            metrics=list(probe.metric_definitions),
        )
        for name, probe in sorted(PROBES.items())
    ]
    return ProbeList(data=data, count=len(data))
