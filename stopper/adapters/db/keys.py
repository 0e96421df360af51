"""API keys: stored as the SHA-256 of their secret (`stopper.app.auth`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import ApiKeyRow
from stopper.adapters.db.storage import Storage
from stopper.app.auth import KeyRole, StoredKey


class KeyStorage(Storage):
    async def add_api_key(self, key: StoredKey) -> None:
        with store_errors():
            async with self._db.begin() as connection:
                await connection.execute(
                    insert(ApiKeyRow).values(
                        key_id=key.key_id,
                        agency_code=key.agency_code,
                        role=key.role.value,
                        secret_sha256=key.secret_sha256,
                        label=key.label,
                        holder=key.holder,
                        created_at=key.created_at,
                        revoked_at=key.revoked_at,
                    )
                )

    async def get_api_key(self, key_id: str) -> StoredKey | None:
        with store_errors():
            async with self._db.read() as connection:
                row = (
                    await connection.execute(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
                ).one_or_none()
        return None if row is None else _stored_key(row)

    async def list_api_keys(self) -> list[StoredKey]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
                return [_stored_key(row) for row in rows]

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        with store_errors():
            async with self._db.begin() as connection:
                done = await connection.execute(
                    update(ApiKeyRow)
                    .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
                    .values(revoked_at=at)
                )
                return done.rowcount == 1


def _stored_key(row: Any) -> StoredKey:  # a Core row of api_keys
    return StoredKey(
        key_id=row.key_id,
        agency_code=row.agency_code,
        role=KeyRole(row.role),
        secret_sha256=row.secret_sha256,
        label=row.label,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        holder=row.holder,
    )
