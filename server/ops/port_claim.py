"""The port of `corrigo serve --workers N`, claimed by the supervisor before any worker.

Workers bind with SO_REUSEPORT, which would let a second `corrigo serve --workers N` on
the same port silently share it. So the supervisor first binds the address the way a lone
server does (SO_REUSEADDR, not SO_REUSEPORT): that fails, with today's message, while
anything listens there. It then holds the address with a bound, never listening socket
that has SO_REUSEPORT but not SO_REUSEADDR: its workers (same user, SO_REUSEPORT) may
join it, while another server's check keeps failing for as long as the supervisor lives.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from corrigo.server.config import ConfigError, split_listen


def _in_use(listen: str) -> ConfigError:
    return ConfigError(
        f"cannot listen on {listen} (in use, or not an address of this host); "
        "pass --listen HOST:PORT (env CORRIGO_LISTEN)"
    )


def _bound(family: int, address: tuple[object, ...], reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def claim(listen: str) -> Iterator[str]:
    """Hold `listen` (HOST:PORT) while the block runs; it yields HOST:PORT with the port
    chosen when `listen` asked for port 0. ConfigError when the address is taken."""
    host, port = split_listen(listen)
    try:
        addresses = {
            (info[0], info[4][:2])
            for info in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        }
    except socket.gaierror:
        raise _in_use(listen) from None
    with contextlib.ExitStack() as held:
        for family, (address, _) in sorted(addresses, key=lambda a: a[0]):
            try:
                _bound(family, (address, port), reuse_port=False).close()
                sock = held.enter_context(_bound(family, (address, port), reuse_port=True))
            except OSError:
                raise _in_use(listen) from None
            # Port 0: every address of the host name gets the port the first one got.
            port = sock.getsockname()[1]
        bracketed = f"[{host}]" if ":" in host else host
        yield f"{bracketed}:{port}"
