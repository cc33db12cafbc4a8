"""The API's RPCs, read from the generated descriptors of every corrigo.v1 proto file."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from google.protobuf.descriptor import FileDescriptor, MethodDescriptor

import corrigo.v1


@functools.cache
def files() -> tuple[FileDescriptor, ...]:
    """Every corrigo.v1 proto file, a new one included."""
    modules = sorted(
        info.name
        for info in pkgutil.iter_modules(corrigo.v1.__path__)
        if info.name.endswith("_pb2")
    )
    return tuple(importlib.import_module(f"corrigo.v1.{name}").DESCRIPTOR for name in modules)


@functools.cache
def methods() -> tuple[MethodDescriptor, ...]:
    """Every RPC of every service of corrigo.v1, a new proto file's included."""
    return tuple(
        method
        for file in files()
        for service in file.services_by_name.values()
        for method in service.methods
    )


def path(method: MethodDescriptor) -> str:
    """The RPC's path on the wire: `/corrigo.v1.Service/Method`."""
    return f"/{method.containing_service.full_name}/{method.name}"
