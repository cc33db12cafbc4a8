"""The C writer of `corrigo export`'s JSON lines (client/export_json.c), declared here
because pyproject.toml's `ext-modules` table makes setuptools warn on every install
that it is experimental. Optional: where it cannot be built, the Python writer in
client/records.py writes the same lines, more slowly. Everything else is pyproject.toml's."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "corrigo.client.export_json",
            ["client/export_json.c"],
            # Its field tables, generated from the protos by `make gen`.
            include_dirs=["gen/c"],
            depends=["gen/c/export_json_tables.h"],
            optional=True,
        )
    ]
)
