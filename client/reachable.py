"""Waiting for a server that cannot be reached yet, before a command's first call.

Only the connection is retried here, never a call: a command waits until its channel is
ready, saying so on stderr, and makes its calls only then, so no call that may have
reached the server is ever sent twice by this wait.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

import grpc

from corrigo.client.errors import CorrigoError

DEFAULT_WAIT_SECONDS = 5.0
# The first look is short: a server that is up answers a connection at once.
_FIRST_LOOK_SECONDS = 0.5
# As long as the channel's own reconnection backoff grows (channel.py).
_LONGEST_PAUSE_SECONDS = 2.0


def wait_until_reachable(
    channel: grpc.Channel, target: str, limit: float, say: TextIO = sys.stderr
) -> None:
    """Return once `channel` is connected; until then, a line per retry on `say`. Past
    `limit` seconds, raise UNAVAILABLE as a CorrigoError."""
    deadline = time.monotonic() + limit
    ready = grpc.channel_ready_future(channel)
    pause = min(_FIRST_LOOK_SECONDS, limit)
    retry = 0
    try:
        while True:
            try:
                ready.result(timeout=pause)
                return
            except grpc.FutureTimeoutError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise CorrigoError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"cannot reach {target} (waited {limit:g} s; --wait SECONDS waits longer)",
                )
            retry += 1
            pause = min(max(1.0, 2.0 * pause), _LONGEST_PAUSE_SECONDS, left)
            print(
                f"waiting for {target} (UNAVAILABLE), retry {retry} in {math.ceil(pause)} s; "
                "Ctrl-C to stop",
                file=say,
                flush=True,
            )
    finally:
        ready.cancel()
