"""API keys: create (the key is returned once), list, revoke, and authenticate a presented key.

A key is ``ppk_<prefix>_<secret>``: the 8-hex-digit prefix finds the row by an indexed lookup and
names the key in lists and logs; the secret is 256 random bits. Only an HMAC-SHA256 of the whole key
is stored. A fast keyed hash is enough for keys that random (nothing to brute-force, unlike a
password); it is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.orm import ApiKey
from app.orm.base import utcnow
from priorprobe_client.schemas.keys import KeyScope

KEY_PREFIX = "ppk_"
# last_used_at is a hint for people pruning keys, not an audit log: one write per key per minute.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class KeyNotFound(LookupError):
    pass


def hash_key(key: str, pepper: str) -> str:
    return hmac.new(("priorprobe-api-key:" + pepper).encode(), key.encode(), hashlib.sha256).hexdigest()


def create_key(session: Session, name: str, scope: KeyScope, pepper: str) -> tuple[ApiKey, str]:
    """A new key with ``scope``; returns the record and the secret key (not stored anywhere)."""
    prefix = secrets.token_hex(4)
    while session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is not None:
        prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(name=name, prefix=prefix, key_hash=hash_key(key, pepper), scopes=[KeyScope(scope).value])
    session.add(record)
    session.commit()
    return record, key


def list_keys(session: Session, include_revoked: bool = True) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def find_key(session: Session, id_or_prefix: str) -> ApiKey:
    """A key by id, prefix, or name (when the name is unique among unrevoked keys)."""
    record = session.get(ApiKey, id_or_prefix) or session.scalar(select(ApiKey).where(ApiKey.prefix == id_or_prefix))
    if record is None:
        named = session.scalars(select(ApiKey).where(ApiKey.name == id_or_prefix, ApiKey.revoked_at.is_(None))).all()
        if len(named) > 1:
            raise KeyNotFound(f"{len(named)} keys are named '{id_or_prefix}'; give the id or the prefix")
        record = named[0] if named else None
    if record is None:
        raise KeyNotFound(f"no API key with id, prefix or name '{id_or_prefix}'")
    return record


def revoke_key(session: Session, id_or_prefix: str) -> ApiKey:
    record = find_key(session, id_or_prefix)
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.commit()
    return record


def authenticate(session: Session, presented: str, pepper: str) -> ApiKey | None:
    """The unrevoked key ``presented`` is, or None; records when it was last used."""
    if not presented.startswith(KEY_PREFIX) or presented.count("_") < 2:
        return None
    prefix = presented[len(KEY_PREFIX):].split("_", 1)[0]
    record = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.key_hash, hash_key(presented, pepper)):
        return None
    now = utcnow()
    if record.last_used_at is None or _as_aware(record.last_used_at) < now - _LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == record.id).values(last_used_at=now))
        session.commit()
    return record


def _as_aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def granted_scope(record: ApiKey) -> KeyScope:
    """The widest scope of the key (scopes nest: admin includes write includes read)."""
    return max((KeyScope(scope) for scope in record.scopes), key=list(KeyScope).index)
