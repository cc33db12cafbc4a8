"""Whether N workers' database pools fit in PostgreSQL's connections, checked before
`corrigo serve --workers N` starts any (SQLite has no connection limit to check)."""

from __future__ import annotations

import asyncpg

from corrigo.server.config import Config, ConfigError
from corrigo.server.store import database


async def check(config: Config) -> None:
    """ConfigError, saying what to change, when `config.workers` pools of
    `config.db_pool_size` connections cannot all open beside the connections in use."""
    if not database.is_postgres(config.database_url):
        return
    conn = await asyncpg.connect(config.database_url)
    try:
        limit = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
        # Every client's connection but this check's own.
        in_use = (
            int(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                )
            )
            - 1
        )
    finally:
        await conn.close()
    free = limit - reserved - in_use
    needed = config.workers * config.db_pool_size
    if needed > free:
        raise ConfigError(
            f"--workers {config.workers} x --db-pool-size {config.db_pool_size} = {needed} "
            f"database connections, but PostgreSQL has {free} free (max_connections {limit}, "
            f"{reserved} reserved for superusers, {in_use} in use): lower --workers or "
            "--db-pool-size, or raise PostgreSQL's max_connections"
        )
