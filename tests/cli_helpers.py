"""Running the `corrigo` command as a subprocess against a test server."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Org

CORRIGO = str(Path(sys.executable).parent / "corrigo")


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def line(self) -> str:
        """The last line of stderr: where a failed command says what went wrong."""
        return self.err.strip().splitlines()[-1] if self.err.strip() else ""


async def corrigo(
    org: Org | None, *args: str, token: str | None = None, cwd: Path | None = None, **env: str
) -> Ran:
    """`corrigo ARGS` with the org's target and admin token (or `token`; "" for none)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CORRIGO_")}
    if org is not None:
        environment["CORRIGO_TARGET"] = org.running.target
        chosen = org.admin_token if token is None else token
        if chosen:
            environment["CORRIGO_TOKEN"] = chosen
    environment.update(env)
    process = await asyncio.create_subprocess_exec(
        CORRIGO,
        *args,
        env=environment,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return Ran(process.returncode or 0, out.decode(), err.decode())
