"""All resource routers under ``/api/v1``."""

from fastapi import APIRouter

from app.api.routes import datasets, health, keys, metrics, models, probes, runs, webhooks

api_router = APIRouter(prefix="/api/v1")
for module in (models, datasets, runs, metrics, probes, keys, webhooks, health):
    api_router.include_router(module.router)
