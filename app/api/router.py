"""All resource routers under ``/api/v1``."""

from fastapi import APIRouter, Depends

from app.api.routes import datasets, health, keys, metrics, models, probes, runs, webhooks
from app.api.storable import storable_params

api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(storable_params)])
for module in (models, datasets, runs, metrics, probes, keys, webhooks, health):
    api_router.include_router(module.router)
