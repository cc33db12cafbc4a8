"""Whether the server can listen where it is told to, asked before grpc binds: grpc logs
its own error line (`E... add_port.cc`) on stderr before it refuses a taken address, so
the server refuses first, in its own words only."""

from __future__ import annotations

import socket

from corrigo.server.config import split_listen


def can_listen(listen: str) -> bool:
    """False when no address HOST resolves to can be bound on PORT (another process holds
    it, or it is not this host's), as grpc would find; True for port 0 or what grpc
    itself should judge (a malformed address)."""
    try:
        host, port = split_listen(listen)
    except ValueError:
        return True
    if port == 0:
        return True
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as probe:
            # As grpc binds: a port left in TIME_WAIT by a stopped server is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError:
                continue
            return True
    return False
