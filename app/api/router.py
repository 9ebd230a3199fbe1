"""All resource routers under ``/api/v1``."""

from fastapi import APIRouter, Depends

from app.api.storable import storable_params
from app.api.routes import datasets, health, metrics, models, probes, runs

api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(storable_params)])
for module in (models, datasets, runs, metrics, probes, health):
    api_router.include_router(module.router)
