"""The dashboard's pages, one module per page family; every page but sign-in requires a user."""

from fastapi import APIRouter, Depends

from app.dashboard.pages import account, catalog_pages, compare, run, runs
from app.dashboard.security import require_user

router = APIRouter(include_in_schema=False)
router.include_router(account.router)
for module in (runs, run, catalog_pages, compare):
    router.include_router(module.router, dependencies=[Depends(require_user)])
