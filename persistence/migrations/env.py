"""Alembic environment: runs on the connection that ``persistence.migrate`` hands it.

For ``alembic revision --autogenerate`` from a shell, set ``HUB_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from persistence.db import create_engine
from persistence.models import Base
from realtime.base.config import DEFAULT_DATABASE_URL

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone() -> None:
    engine = create_engine(os.environ.get("HUB_DATABASE_URL", DEFAULT_DATABASE_URL))
    async with engine.begin() as conn:
        await conn.run_sync(run_on)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run them online")

connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    asyncio.run(run_standalone())
