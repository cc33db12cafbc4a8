"""`--workers`: its values, the port its supervisor claims, and the check that N database
pools fit in PostgreSQL's connections."""

from __future__ import annotations

import argparse
import os

import grpc
import pytest

from corrigo.server import config
from corrigo.server.ops import port_claim, sizing
from tests.processes import corrigo


def _parsed(*flags: str) -> config.Config:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.from_arguments(parser.parse_args(list(flags)))


def test_workers_default_to_one_and_auto_is_the_cores_this_process_may_use() -> None:
    assert _parsed().workers == 1
    assert _parsed("--workers", "3").workers == 3
    assert _parsed("--workers", "auto").workers == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit):
            _parsed("--workers", bad)


async def test_a_claimed_port_admits_workers_and_no_other_server() -> None:
    with port_claim.claim("127.0.0.1:0") as listen:
        host, port = config.split_listen(listen)
        assert host == "127.0.0.1" and port > 0
        taken = f"cannot listen on {listen} \\(in use"
        with pytest.raises(config.ConfigError, match=taken), port_claim.claim(listen):
            pass
        lone = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        with pytest.raises(RuntimeError):
            lone.add_insecure_port(listen)
        worker = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        assert worker.add_insecure_port(listen) == port
        await worker.start()
        # A listening worker keeps the port taken for any other server's check too.
        with pytest.raises(config.ConfigError), port_claim.claim(listen):
            pass
        await worker.stop(None)


async def test_workers_whose_pools_cannot_fit_are_refused_before_any_starts(
    backend: str, db_url: str
) -> None:
    fits = config.Config(database_url=db_url, workers=2, db_pool_size=2)
    await sizing.check(fits)
    if backend == "sqlite":
        # SQLite has no connection limit: any number of workers may open the file.
        await sizing.check(config.Config(database_url=db_url, workers=64, db_pool_size=10_000))
        return
    refused = corrigo(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "4",
        "--db-pool-size",
        "100000",
        "--database",
        db_url,
        timeout=60,
    )
    assert refused.returncode != 0
    assert (
        "--workers 4 x --db-pool-size 100000 = 400000 database connections, but PostgreSQL has"
        in refused.stderr
    ), refused.stderr
    assert "raise PostgreSQL's max_connections" in refused.stderr
