"""Timestamps as the API publishes them: RFC 3339 with an offset, always.

The ORM stores timezone-aware UTC times, but SQLite hands them back without their offset; a
``date-time`` without one is not valid RFC 3339 (the OpenAPI format), so naive values are read as
the UTC they were written in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
